package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHost describes a host for a fake /proc and /sys tree.
type fakeHost struct {
	disk    string            // whole disk name, e.g. "mmcblk0"
	devPath string            // the disk's directory under /sys/devices
	part    string            // partition holding the filesystem, or ""
	majMin  string            // device number of the filesystem's block device
	fsType  string            // filesystem type
	attrs   map[string]string // files under the disk's directory
	ramKiB  int64
	cpus    int
	kernel  string
	cgroup  string // "v2:<memory.max>", "v1:<limit_in_bytes>" or ""
	holders []string
}

// build writes the tree and returns its root.
func (h fakeHost) build(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	h.write(t, root)
	return root
}

// write (re)writes the tree under root.
func (h fakeHost) write(t *testing.T, root string) {
	t.Helper()
	put := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// link makes rel a relative symlink to target (both under root).
	link := func(target, rel string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(filepath.Dir(rel), target)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		if err := os.Symlink(r, p); err != nil {
			t.Fatal(err)
		}
	}
	source := "/dev/" + h.disk
	if h.part != "" {
		source = "/dev/" + h.part
	}
	put("proc/self/mountinfo", fmt.Sprintf(
		"21 1 0:21 / /proc rw,relatime - proc proc rw\n"+
			"27 1 %s / / rw,noatime - %s %s rw\n", h.majMin, h.fsType, source))
	put("proc/meminfo", fmt.Sprintf("MemTotal: %d kB\nMemFree: %d kB\nMemAvailable: %d kB\n", h.ramKiB, h.ramKiB/2, h.ramKiB/2))
	var cpu strings.Builder
	for i := range h.cpus {
		fmt.Fprintf(&cpu, "processor\t: %d\n\n", i)
	}
	put("proc/cpuinfo", cpu.String())
	put("proc/sys/kernel/osrelease", h.kernel+"\n")
	switch {
	case strings.HasPrefix(h.cgroup, "v2:"):
		put("proc/self/cgroup", "0::/system.slice/eddy.service\n")
		put("sys/fs/cgroup/system.slice/eddy.service/memory.max", strings.TrimPrefix(h.cgroup, "v2:")+"\n")
		put("sys/fs/cgroup/system.slice/memory.max", "max\n")
	case strings.HasPrefix(h.cgroup, "v1:"):
		put("proc/self/cgroup", "4:memory:/eddy\n1:cpu,cpuacct:/eddy\n")
		put("sys/fs/cgroup/memory/eddy/memory.limit_in_bytes", strings.TrimPrefix(h.cgroup, "v1:")+"\n")
		put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
	default:
		put("proc/self/cgroup", "0::/\n")
	}

	diskDir := filepath.Join("sys/devices", h.devPath)
	for rel, content := range h.attrs {
		put(filepath.Join(diskDir, rel), content+"\n")
	}
	fsDir := filepath.Join(diskDir, h.part)
	if h.part != "" {
		put(filepath.Join(fsDir, "partition"), "1\n")
	}
	// Holders stack on top: the filesystem sits on the first holder.
	for i := len(h.holders) - 1; i >= 0; i-- {
		hd := filepath.Join("sys/devices/virtual/block", h.holders[i])
		put(filepath.Join(hd, "dev"), h.majMin+"\n")
		link(fsDir, filepath.Join(hd, "slaves", filepath.Base(fsDir)))
		fsDir = hd
	}
	link(fsDir, filepath.Join("sys/dev/block", h.majMin))
	link(diskDir, filepath.Join("sys/class/block", h.disk))
	if h.part != "" {
		link(filepath.Join(diskDir, h.part), filepath.Join("sys/class/block", h.part))
	}
}

// The hosts of the derivation tests.
var (
	sdHost = fakeHost{
		disk: "mmcblk0", part: "mmcblk0p2", majMin: "179:2", fsType: "ext4",
		devPath: "platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0",
		attrs: map[string]string{
			"queue/rotational": "0", "queue/scheduler": "[mq-deadline] none", "queue/nr_requests": "64",
			"size": "62333952", "removable": "0", "device/type": "SD", "device/name": "SN64G",
			"device/serial": "0x1234abcd",
		},
		ramKiB: 1 << 20, cpus: 4, kernel: "6.6.31-v8+",
	}
	ssdHost = fakeHost{
		disk: "sda", part: "sda1", majMin: "8:1", fsType: "ext4",
		devPath: "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
		attrs: map[string]string{
			"queue/rotational": "0", "queue/scheduler": "[mq-deadline] none", "queue/nr_requests": "64",
			"size": "976773168", "removable": "0", "device/model": "Samsung SSD 870", "device/vendor": "ATA",
			"device/wwid": "t10.ATA Samsung SSD 870 S6PNNS0T",
		},
		ramKiB: 4 << 20, cpus: 4, kernel: "6.1.0-18-amd64",
	}
	nvmeHost = fakeHost{
		disk: "nvme0n1", part: "nvme0n1p3", majMin: "259:3", fsType: "xfs",
		devPath: "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1",
		attrs: map[string]string{
			"queue/rotational": "0", "queue/scheduler": "[none] mq-deadline", "queue/nr_requests": "1023",
			"size": "3907029168", "removable": "0", "device/model": "Samsung SSD 990 PRO 2TB",
			"device/serial": "S7KHNJ0W123456",
		},
		ramKiB: 32 << 20, cpus: 16, kernel: "6.8.0-31-generic",
	}
	hddHost = fakeHost{
		disk: "sdb", majMin: "8:16", fsType: "ext4",
		devPath: "pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb",
		attrs: map[string]string{
			"queue/rotational": "1", "queue/scheduler": "[mq-deadline] none", "queue/nr_requests": "64",
			"size": "7814037168", "device/model": "WDC WD40EFRX-68N",
		},
		ramKiB: 8 << 20, cpus: 4, kernel: "6.1.0-18-amd64",
	}
	virtioHost = fakeHost{
		disk: "vda", majMin: "254:0", fsType: "ext4",
		devPath: "pci0000:00/0000:00:02.0/virtio1/block/vda",
		attrs: map[string]string{
			"queue/rotational": "1", "queue/scheduler": "[mq-deadline] none", "queue/nr_requests": "256",
			"size": "536870912", "serial": "overlayblk",
		},
		ramKiB: 24 << 20, cpus: 2, kernel: "6.18.0",
	}
)

// curve builds measurements from a sequential bandwidth, p50 latencies of
// the sync curve (p99 = 2 x p50), random-read IOPS and the p99 of growing
// and preallocated appends.
func curve(seqBW float64, p50 [4]time.Duration, iops float64, grow, pre time.Duration) *Measurements {
	m := &Measurements{ProbeVersion: ProbeVersion, SeqWriteBytesPerSec: seqBW, SeqReadBytesPerSec: seqBW * 1.5, PreallocSupported: true}
	for i, size := range SyncSizes {
		m.Sync = append(m.Sync, SyncPoint{
			Bytes: size, Samples: 100, P50: Latency(p50[i]), P99: Latency(2 * p50[i]), Max: Latency(3 * p50[i]),
			BytesPerSec: float64(size) / p50[i].Seconds(),
		})
	}
	m.Growing = SyncPoint{Bytes: 4096, Samples: 100, P50: Latency(grow / 2), P99: Latency(grow)}
	m.Preallocated = SyncPoint{Bytes: 4096, Samples: 100, P50: Latency(pre / 2), P99: Latency(pre)}
	m.RandRead = ReadPoint{Method: "o_direct", Samples: 1000, IOPS: iops, Depth: 16, DeepIOPS: 4 * iops}
	return m
}

var (
	sdCurve = curve(20e6, [4]time.Duration{15 * time.Millisecond, 18 * time.Millisecond, 25 * time.Millisecond, 60 * time.Millisecond},
		1500, 40*time.Millisecond, 30*time.Millisecond)
	ssdCurve = curve(450e6, [4]time.Duration{300 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 3 * time.Millisecond},
		8000, 2*time.Millisecond, 1500*time.Microsecond)
	nvmeCurve = curve(2.5e9, [4]time.Duration{50 * time.Microsecond, 80 * time.Microsecond, 150 * time.Microsecond, 500 * time.Microsecond},
		60000, 200*time.Microsecond, 198*time.Microsecond)
	hddCurve = curve(180e6, [4]time.Duration{8 * time.Millisecond, 9 * time.Millisecond, 11 * time.Millisecond, 16 * time.Millisecond},
		120, 20*time.Millisecond, 12*time.Millisecond)
)

// countingProber returns a prober that counts its calls and returns m.
func countingProber(m *Measurements, calls *int) Prober {
	return func(_ context.Context, dir string, budget time.Duration, progress func(string, float64)) (Measurements, error) {
		*calls++
		if progress != nil {
			progress("fake", 1)
		}
		return *m, nil
	}
}
