package disk

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDiscoverFakeHosts(t *testing.T) {
	emmcHost := sdHost
	emmcHost.attrs = cloneAttrs(sdHost.attrs, "device/type", "MMC")
	usbHost := fakeHost{
		disk: "sdc", part: "sdc1", majMin: "8:33", fsType: "vfat",
		devPath: "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc",
		attrs:   map[string]string{"queue/rotational": "1", "removable": "1", "size": "60437492", "device/model": "Ultra Fit"},
		ramKiB:  2 << 20, cpus: 4, kernel: "6.1.0",
	}
	lvmOnNVMe := nvmeHost
	lvmOnNVMe.holders = []string{"dm-0"}
	lvmOnNVMe.majMin = "253:0"

	cases := []struct {
		name      string
		host      fakeHost
		disk      string
		partition string
		holders   []string
		bus       string
		kind      Kind
		wear      bool
		model     string
		serial    string
		reason    string
	}{
		{"sd card", sdHost, "mmcblk0", "mmcblk0p2", nil, "mmc", KindSD, true, "SN64G", "0x1234abcd", "device/type=SD"},
		{"emmc", emmcHost, "mmcblk0", "mmcblk0p2", nil, "mmc", KindEMMC, true, "SN64G", "0x1234abcd", "device/type=MMC"},
		{"sata ssd", ssdHost, "sda", "sda1", nil, "ata", KindSSD, false, "Samsung SSD 870", "t10.ATA Samsung SSD 870 S6PNNS0T", "rotational=0"},
		{"nvme", nvmeHost, "nvme0n1", "nvme0n1p3", nil, "nvme", KindNVMe, false, "Samsung SSD 990 PRO 2TB", "S7KHNJ0W123456", "NVMe"},
		{"lvm on nvme", lvmOnNVMe, "nvme0n1", "nvme0n1p3", []string{"dm-0"}, "nvme", KindNVMe, false, "Samsung SSD 990 PRO 2TB", "S7KHNJ0W123456", "NVMe"},
		{"hdd", hddHost, "sdb", "", nil, "ata", KindHDD, false, "WDC WD40EFRX-68N", "", "rotational=1"},
		{"virtio claims rotational", virtioHost, "vda", "", nil, "virtio", KindSSD, false, "", "overlayblk", "not trusted"},
		{"usb stick", usbHost, "sdc", "sdc1", nil, "usb", KindSD, true, "Ultra Fit", "", "removable USB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := c.host.build(t)
			info, err := Discover(filepath.Join(t.TempDir(), "not-yet"), Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			d := info.Device
			if d.Name != c.disk || d.Partition != c.partition || !slices.Equal(d.Holders, c.holders) || d.Bus != c.bus {
				t.Errorf("device %s part %q holders %v bus %s; want %s %q %v %s", d.Name, d.Partition, d.Holders, d.Bus, c.disk, c.partition, c.holders, c.bus)
			}
			if info.Kind != c.kind || info.WearSensitive != c.wear {
				t.Errorf("kind %s wear %v; want %s %v (reasons %q)", info.Kind, info.WearSensitive, c.kind, c.wear, info.Reasons)
			}
			if !strings.Contains(strings.Join(info.Reasons, "; "), c.reason) {
				t.Errorf("reasons %q do not mention %q", info.Reasons, c.reason)
			}
			if d.Model != c.model || d.Serial != c.serial || d.MajMin != c.host.majMin {
				t.Errorf("model %q serial %q majmin %s; want %q %q %s", d.Model, d.Serial, d.MajMin, c.model, c.serial, c.host.majMin)
			}
			if info.FSType != c.host.fsType || info.MountPoint != "/" {
				t.Errorf("fs %s on %s; want %s on /", info.FSType, info.MountPoint, c.host.fsType)
			}
			if want := uint64(c.host.ramKiB) << 10; info.RAMBytes != want || info.CPUs != c.host.cpus || info.Kernel != c.host.kernel {
				t.Errorf("ram %d cpus %d kernel %q; want %d %d %q", info.RAMBytes, info.CPUs, info.Kernel, want, c.host.cpus, c.host.kernel)
			}
			if info.FreeBytes == 0 || info.TotalBytes < info.FreeBytes {
				t.Errorf("free %d of %d bytes", info.FreeBytes, info.TotalBytes)
			}
		})
	}
}

func cloneAttrs(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestDiscoverCgroupLimits(t *testing.T) {
	for _, c := range []struct {
		cgroup string
		want   uint64
	}{
		{"v2:536870912", 512 << 20},
		{"v2:max", 32 << 30},
		{"v1:268435456", 256 << 20},
	} {
		h := nvmeHost
		h.cgroup = c.cgroup
		info, err := Discover(t.TempDir(), Options{Root: h.build(t)})
		if err != nil {
			t.Fatal(err)
		}
		if info.RAMBytes != c.want || info.HostRAMBytes != 32<<30 {
			t.Errorf("cgroup %s: ram %d (host %d), want %d", c.cgroup, info.RAMBytes, info.HostRAMBytes, c.want)
		}
	}
}

func TestDiscoverCPUQuota(t *testing.T) {
	h := nvmeHost
	root := h.build(t)
	if err := os.MkdirAll(filepath.Join(root, "sys/fs/cgroup"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sys/fs/cgroup/cpu.max"), []byte("150000 100000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := Discover(t.TempDir(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if info.CPUs != 2 || info.HostCPUs != 16 {
		t.Fatalf("cpus %d of %d, want 2 (1.5 rounded up) of 16", info.CPUs, info.HostCPUs)
	}
}

func TestDiscoverByMountSource(t *testing.T) {
	// btrfs reports an anonymous device number (0:N): the mount source
	// names the partition.
	h := ssdHost
	h.fsType = "btrfs"
	root := h.build(t)
	mi := "27 1 0:45 / / rw,noatime - btrfs /dev/sda1 rw\n"
	if err := os.WriteFile(filepath.Join(root, "proc/self/mountinfo"), []byte(mi), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := Discover(t.TempDir(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if info.Device.Name != "sda" || info.Device.Partition != "sda1" || info.Kind != KindSSD {
		t.Fatalf("device %+v kind %s; want sda1 on sda, ssd", info.Device, info.Kind)
	}
	p := Derive(info, ssdCurve)
	if s, _ := p.Get(KeyPreallocateBytes); s.Value != "0" || !strings.Contains(s.Rule, "copy-on-write") {
		t.Fatalf("btrfs preallocation %q (%s), want 0 for copy-on-write", s.Value, s.Rule)
	}
}

func TestDiscoverWithoutBlockDevice(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc/self"), 0o755); err != nil {
		t.Fatal(err)
	}
	mi := "27 1 0:30 / / rw - tmpfs tmpfs rw\n"
	if err := os.WriteFile(filepath.Join(root, "proc/self/mountinfo"), []byte(mi), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/meminfo"), []byte("MemTotal: 1048576 kB\nMemFree: 1000 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := Discover(t.TempDir(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if info.Device.Name != "" || info.Kind != KindUnknown {
		t.Fatalf("tmpfs: device %q kind %s, want none and unknown", info.Device.Name, info.Kind)
	}
	w := strings.Join(info.Warnings, "; ")
	for _, want := range []string{"tmpfs is memory", "no block device"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q do not mention %q", w, want)
		}
	}
}

func TestDiscoverRealHost(t *testing.T) {
	info, err := Discover(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.RAMBytes == 0 || info.CPUs < 1 || info.Kernel == "" || info.FSType == "" || info.MountPoint == "" {
		t.Fatalf("incomplete: %+v", info)
	}
	if len(info.Reasons) == 0 {
		t.Fatalf("no classification reasons: %+v", info)
	}
}

func TestMountinfoParsing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mountinfo")
	data := "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n" +
		"40 27 8:17 / /mnt/data\\040disk rw,noatime shared:5 master:1 - xfs /dev/sdb1 rw\n" +
		"41 27 8:18 / /mnt/data rw - ext4 /dev/sdb2 rw\n" +
		"garbage line\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts, err := readMountinfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 3 || mounts[1].point != "/mnt/data disk" || mounts[1].fsType != "xfs" || mounts[1].source != "/dev/sdb1" {
		t.Fatalf("parsed %+v", mounts)
	}
	for path, want := range map[string]string{
		"/mnt/data disk/eddy": "8:17",
		"/mnt/data/eddy":      "8:18",
		"/mnt/database":       "254:0", // a prefix of the name is not a parent
		"/var/lib/eddy":       "254:0",
	} {
		m, ok := mountFor(mounts, path, "")
		if !ok || m.majMin != want {
			t.Errorf("mount for %s: %s, want %s", path, m.majMin, want)
		}
	}
	w := strings.Join(mountWarnings(mount{fsType: "ext4", options: []string{"rw", "sync"}}), "; ")
	if !strings.Contains(w, "mounted sync") || !strings.Contains(w, "without noatime") {
		t.Errorf("ext4 rw,sync warnings: %q", w)
	}
	// The device stat reports wins over a longer mount point.
	if m, _ := mountFor(mounts, "/mnt/data/eddy", "254:0"); m.majMin != "254:0" {
		t.Errorf("stat device not preferred: %s", m.majMin)
	}
}
