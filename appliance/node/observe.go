package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/eddybroker/eddy/appliance/admin"
	"github.com/eddybroker/eddy/appliance/broker"
	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/eddybroker/eddy/appliance/telemetry"
)

// watermarks are the disk guard's thresholds from the [disk] section.
func watermarks(cfg *config.Config) disk.Watermarks {
	d := cfg.Disk
	return disk.Watermarks{Hard: d.HardWatermark, Soft: d.SoftWatermark, MinFree: uint64(d.MinFreeBytes.Int64())}
}

// watchDisk checks the data disk's free space every disk.check_interval
// (re-read each round, so a reload applies) and logs each change of the
// produce decision.
func (n *Node) watchDisk() {
	defer n.maint.Done()
	for {
		t := time.NewTimer(n.cfg.Load().Disk.CheckInterval.D())
		select {
		case <-n.retention:
			t.Stop()
			return
		case <-t.C:
		}
		changed, err := n.guard.Check()
		if err != nil {
			n.log.Warn("cannot read the data disk's free space", "err", err)
			continue
		}
		if !changed {
			continue
		}
		refusing := n.guard.Refusing()
		n.metrics.SetProduceRefused(refusing)
		sp := n.guard.Last()
		if refusing {
			n.log.Error("data disk full: refusing produces; fetches go on", "err", n.guard.Err(), "used_percent", sp.UsedPercent(), "free_bytes", sp.Avail)
			n.opts.Status("refusing produces: data disk full")
		} else {
			n.log.Info("data disk below its soft watermark: produces resume", "used_percent", sp.UsedPercent(), "free_bytes", sp.Avail)
			n.opts.Status(n.StatusLine())
		}
	}
}

// canPreallocate allows reserving n more bytes of segment space only
// while the data disk stays below its soft watermark and above its floor
// afterwards: preallocation across many partitions must never be what
// fills the disk.
func (n *Node) canPreallocate(bytes int64) bool {
	sp, err := disk.StatSpace(n.dir)
	if err != nil || bytes < 0 {
		return false
	}
	d := n.cfg.Load().Disk
	need := uint64(bytes) + uint64(d.MinFreeBytes.Int64())
	if sp.Avail < need {
		return false
	}
	after := disk.Space{Used: sp.Used + uint64(bytes), Avail: sp.Avail - uint64(bytes)}
	return after.UsedPercent() < float64(d.SoftWatermark)
}

// partitionStats lists every partition for the metrics collector.
func (n *Node) partitionStats(yield func(telemetry.PartitionStats) bool) {
	for _, p := range n.brk.Partitions("") {
		ps := telemetry.PartitionStats{Topic: p.Topic, Partition: p.Partition, SizeBytes: p.Size, Segments: p.Segments,
			LogStartOffset: p.LogStart, HighWatermark: p.HW, LogEndOffset: p.LEO}
		if c := p.Cleaner; c != nil {
			ps.Cleaner = &telemetry.CleanerStats{DirtyBytes: c.DirtyBytes, DirtyRatio: c.DirtyRatio, BytesCleaned: c.BytesCleaned,
				RecordsRemoved: c.RecordsRemoved, Failures: c.Failures}
		}
		if !yield(ps) {
			return
		}
	}
}

// wireObserver feeds the Kafka front ends' events to the metrics, naming
// the transport of each listener.
type wireObserver struct{ m *telemetry.Metrics }

func transportOf(listener string) string {
	if listener == ListenerKafka {
		return "tcp"
	}
	return listener
}

func (o wireObserver) ConnOpened(listener string) { o.m.ConnOpened(transportOf(listener)) }
func (o wireObserver) ConnClosed(listener string) { o.m.ConnClosed(transportOf(listener)) }
func (o wireObserver) ConnRefused(listener, limit string) {
	o.m.ConnRefused(transportOf(listener), limit)
}

func (o wireObserver) Request(listener string, key int16, reqBytes, respBytes int, latency time.Duration) {
	o.m.ObserveRequest(telemetry.Request{APIKey: key, Transport: transportOf(listener), ReqBytes: reqBytes, RespBytes: respBytes, Latency: latency})
}

// startProfiling starts continuous profiling when [profiling] names a
// server. Every profile carries the site, version, firmware slot and node
// tags besides the configured ones.
func (n *Node) startProfiling(cfg *config.Config) error {
	p := cfg.Profiling
	if p.Server == "" {
		return nil
	}
	tags := map[string]string{
		"site":    p.Site,
		"version": n.opts.Version,
		"slot":    os.Getenv("EDDY_SLOT"),
		"node":    fmt.Sprint(cfg.Node.ID),
	}
	for _, t := range p.Tags {
		k, v, _ := strings.Cut(t, "=")
		tags[k] = v
	}
	stop, err := telemetry.Start(telemetry.ProfilingConfig{
		Enabled: true, ServerAddress: p.Server, ApplicationName: p.Application, Tags: tags, ProfileTypes: p.Types,
		UploadRate: p.UploadRate.D(), DisableGCRuns: p.DisableGCRuns,
		BasicAuthUser: p.BasicAuthUser, BasicAuthPassword: p.BasicAuthPassword, TenantID: p.TenantID, Logger: n.log,
	})
	if err != nil {
		return fmt.Errorf("profiling: %w", err)
	}
	n.stopProf = stop
	return nil
}

// Plugins implements admin.PluginSource.
func (n *Node) Plugins() any { return n.brk.Plugins() }

// Plugin implements admin.PluginSource.
func (n *Node) Plugin(ref string) (any, error) {
	info, err := n.brk.Plugin(ref)
	return info, adminError(err)
}

// AddPlugin implements admin.PluginSource.
func (n *Node) AddPlugin(ctx context.Context, name string, wasm []byte) (any, error) {
	info, err := n.brk.AddPlugin(ctx, name, wasm)
	return info, adminError(err)
}

// RemovePlugin implements admin.PluginSource.
func (n *Node) RemovePlugin(ctx context.Context, ref string) error {
	return adminError(n.brk.RemovePlugin(ctx, ref))
}

// adminError marks broker errors with the admin API's status classes.
func adminError(err error) error {
	switch {
	case errors.Is(err, broker.ErrNoSuchPlugin):
		return fmt.Errorf("%w: %w", admin.ErrNotFound, err)
	case errors.Is(err, broker.ErrPluginInUse):
		return fmt.Errorf("%w: %w", admin.ErrConflict, err)
	}
	return err
}
