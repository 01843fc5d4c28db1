package telemetry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v3/common"
	"github.com/shirou/gopsutil/v3/cpu"
	psdisk "github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
)

// HostOptions configures a HostCollector.
type HostOptions struct {
	// DataDir is the data directory; its filesystem's usage and its
	// disk's I/O counters are reported. Empty leaves them out.
	DataDir string
	// Root is prepended to /proc and /sys paths (tests); empty means "/".
	Root string
}

// HostCollector reports the host's CPU, memory, load, and the data
// directory's filesystem and disk, read with gopsutil on every scrape.
type HostCollector struct {
	opts HostOptions
	ctx  context.Context
	info disk.Info
	disk bool // info describes a resolved block device

	cpuSeconds, cpus, load                         *prometheus.Desc
	memTotal, memAvail, memUsed, memCached         *prometheus.Desc
	memDirty, memWriteback, memLimit               *prometheus.Desc
	fsSize, fsFree, fsUsed, fsInodes, fsInodesFree *prometheus.Desc
	diskInfo                                       *prometheus.Desc
	reads, writes, readBytes, writtenBytes         *prometheus.Desc
	readTime, writeTime, ioTime, ioWeighted, ioNow *prometheus.Desc
}

// NewHostCollector builds the collector. It resolves the data directory's
// device once (disk.Discover); when that fails the collector is still
// returned, without the device's I/O counters, together with the error.
func NewHostCollector(opts HostOptions) (*HostCollector, error) {
	h := &HostCollector{opts: opts, ctx: context.Background()}
	if opts.Root != "" && opts.Root != "/" {
		h.ctx = context.WithValue(h.ctx, common.EnvKey, common.EnvMap{
			common.HostProcEnvKey: filepath.Join(opts.Root, "proc"),
			common.HostSysEnvKey:  filepath.Join(opts.Root, "sys"),
		})
	}
	host := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "host", name), help, labels, nil)
	}
	data := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "data_disk", name), help, labels, nil)
	}
	h.cpuSeconds = host("cpu_seconds_total", "CPU time of the whole host, by mode, summed over CPUs.", "mode")
	h.cpus = host("cpus", "CPUs this process may use (host CPUs, or the cgroup quota when lower).")
	h.load = host("load_average", "Run-queue load average, by period (1m, 5m, 15m).", "period")
	h.memTotal = host("memory_total_bytes", "Host RAM.")
	h.memAvail = host("memory_available_bytes", "RAM available to new allocations without swapping.")
	h.memUsed = host("memory_used_bytes", "RAM in use (total - free - buffers - cache).")
	h.memCached = host("memory_cached_bytes", "Page cache.")
	h.memDirty = host("memory_dirty_bytes", "Page cache waiting to be written back.")
	h.memWriteback = host("memory_writeback_bytes", "Page cache being written back now.")
	h.memLimit = host("memory_limit_bytes", "The cgroup memory limit of this process; absent when unlimited.")
	h.fsSize = data("size_bytes", "Size of the data directory's filesystem.", "mount_point")
	h.fsFree = data("free_bytes", "Bytes of the data directory's filesystem available to the broker.", "mount_point")
	h.fsUsed = data("used_bytes", "Bytes used on the data directory's filesystem.", "mount_point")
	h.fsInodes = data("inodes", "Inodes of the data directory's filesystem.", "mount_point")
	h.fsInodesFree = data("inodes_free", "Free inodes of the data directory's filesystem.", "mount_point")
	h.diskInfo = data("info", "Always 1; labels describe the disk under the data directory.", "device", "kind", "model", "fs_type", "mount_point")
	h.reads = data("reads_total", "Reads completed by the data disk.", "device")
	h.writes = data("writes_total", "Writes completed by the data disk.", "device")
	h.readBytes = data("read_bytes_total", "Bytes read from the data disk.", "device")
	h.writtenBytes = data("written_bytes_total", "Bytes written to the data disk.", "device")
	h.readTime = data("read_seconds_total", "Time reads of the data disk took, summed.", "device")
	h.writeTime = data("write_seconds_total", "Time writes of the data disk took, summed.", "device")
	h.ioTime = data("io_seconds_total", "Time the data disk was busy (utilisation = rate of this).", "device")
	h.ioWeighted = data("io_weighted_seconds_total", "Busy time weighted by requests in flight (queue depth = rate of this).", "device")
	h.ioNow = data("ios_in_progress", "Requests in flight on the data disk.", "device")

	if opts.DataDir == "" {
		return h, nil
	}
	info, err := disk.Discover(opts.DataDir, disk.Options{Root: opts.Root})
	if err != nil {
		return h, fmt.Errorf("host collector: %w", err)
	}
	h.info = info
	h.disk = info.Device.Name != ""
	if !h.disk {
		return h, fmt.Errorf("host collector: %s on %s has no block device", info.FSType, info.MountPoint)
	}
	return h, nil
}

// Info returns what the collector learned about the data directory.
func (h *HostCollector) Info() disk.Info { return h.info }

// Describe implements prometheus.Collector.
func (h *HostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		h.cpuSeconds, h.cpus, h.load, h.memTotal, h.memAvail, h.memUsed, h.memCached, h.memDirty,
		h.memWriteback, h.memLimit, h.fsSize, h.fsFree, h.fsUsed, h.fsInodes, h.fsInodesFree,
		h.diskInfo, h.reads, h.writes, h.readBytes, h.writtenBytes, h.readTime, h.writeTime,
		h.ioTime, h.ioWeighted, h.ioNow,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A source that cannot be read is
// reported as an invalid metric; the others are still collected.
func (h *HostCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}

	if times, err := cpu.TimesWithContext(h.ctx, false); err != nil || len(times) == 0 {
		ch <- prometheus.NewInvalidMetric(h.cpuSeconds, fmt.Errorf("read cpu times: %w", err))
	} else {
		t := times[0]
		for mode, v := range map[string]float64{
			"user": t.User, "nice": t.Nice, "system": t.System, "idle": t.Idle,
			"iowait": t.Iowait, "irq": t.Irq, "softirq": t.Softirq, "steal": t.Steal,
		} {
			counter(h.cpuSeconds, v, mode)
		}
	}
	if n, err := cpu.CountsWithContext(h.ctx, true); err == nil && n > 0 {
		if h.info.CPUs > 0 && h.info.CPUs < n {
			n = h.info.CPUs
		}
		gauge(h.cpus, float64(n))
	}
	if avg, err := load.AvgWithContext(h.ctx); err == nil {
		gauge(h.load, avg.Load1, "1m")
		gauge(h.load, avg.Load5, "5m")
		gauge(h.load, avg.Load15, "15m")
	}

	if vm, err := mem.VirtualMemoryWithContext(h.ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(h.memTotal, fmt.Errorf("read memory: %w", err))
	} else {
		gauge(h.memTotal, float64(vm.Total))
		gauge(h.memAvail, float64(vm.Available))
		gauge(h.memUsed, float64(vm.Used))
		gauge(h.memCached, float64(vm.Cached))
		gauge(h.memDirty, float64(vm.Dirty))
		gauge(h.memWriteback, float64(vm.WriteBack))
	}
	if h.info.CgroupMemLimit > 0 {
		gauge(h.memLimit, float64(h.info.CgroupMemLimit))
	}

	if h.opts.DataDir == "" || h.info.MountPoint == "" {
		return
	}
	mp := h.info.MountPoint
	if u, err := psdisk.UsageWithContext(h.ctx, h.usagePath()); err != nil {
		ch <- prometheus.NewInvalidMetric(h.fsSize, fmt.Errorf("statfs %s: %w", h.opts.DataDir, err))
	} else {
		gauge(h.fsSize, float64(u.Total), mp)
		gauge(h.fsFree, float64(u.Free), mp)
		gauge(h.fsUsed, float64(u.Used), mp)
		gauge(h.fsInodes, float64(u.InodesTotal), mp)
		gauge(h.fsInodesFree, float64(u.InodesFree), mp)
	}
	if !h.disk {
		return
	}
	dev := h.info.Device
	gauge(h.diskInfo, 1, dev.Name, string(h.info.Kind), dev.Model, h.info.FSType, mp)
	stats, err := psdisk.IOCountersWithContext(h.ctx, dev.Name)
	s, ok := stats[dev.Name]
	if err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%s not in diskstats", dev.Name)
		}
		ch <- prometheus.NewInvalidMetric(h.reads, fmt.Errorf("read disk counters: %w", err))
		return
	}
	ms := func(v uint64) float64 { return float64(v) / 1000 }
	counter(h.reads, float64(s.ReadCount), dev.Name)
	counter(h.writes, float64(s.WriteCount), dev.Name)
	counter(h.readBytes, float64(s.ReadBytes), dev.Name)
	counter(h.writtenBytes, float64(s.WriteBytes), dev.Name)
	counter(h.readTime, ms(s.ReadTime), dev.Name)
	counter(h.writeTime, ms(s.WriteTime), dev.Name)
	counter(h.ioTime, ms(s.IoTime), dev.Name)
	counter(h.ioWeighted, ms(s.WeightedIO), dev.Name)
	gauge(h.ioNow, float64(s.IopsInProgress), dev.Name)
}

// usagePath is the data directory, or its mount point while the directory
// does not exist yet.
func (h *HostCollector) usagePath() string {
	if _, err := os.Stat(h.opts.DataDir); err == nil {
		return h.opts.DataDir
	}
	return h.info.MountPoint
}
