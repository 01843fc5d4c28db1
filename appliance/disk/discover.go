package disk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v3/common"
	"github.com/shirou/gopsutil/v3/cpu"
	psdisk "github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/mem"
	"golang.org/x/sys/unix"
)

// Options says where Discover reads the host's facts.
type Options struct {
	// Root is prepended to every /proc and /sys path read, so tests can
	// point Discover at a fake tree; empty means the real "/". The data
	// directory itself is always a real path.
	Root string
}

// statfs reads the size and free space of the filesystem holding a path.
// The data directory is always real, so tests of hosts built under Root
// replace it to fix the free space their expectations depend on.
var statfs = psdisk.UsageWithContext

// path returns p (an absolute /proc or /sys path) under the root.
func (o Options) path(p string) string {
	if o.Root == "" || o.Root == "/" {
		return p
	}
	return filepath.Join(o.Root, p)
}

// gopsutil returns a context that makes gopsutil read /proc and /sys under
// the root.
func (o Options) gopsutil() context.Context {
	ctx := context.Background()
	if o.Root == "" || o.Root == "/" {
		return ctx
	}
	return context.WithValue(ctx, common.EnvKey, common.EnvMap{
		common.HostProcEnvKey: o.path("/proc"),
		common.HostSysEnvKey:  o.path("/sys"),
		common.HostEtcEnvKey:  o.path("/etc"),
		common.HostDevEnvKey:  o.path("/dev"),
	})
}

// Device is the block device a filesystem lives on, as sysfs describes it.
type Device struct {
	// Name is the whole disk the data ends up on: "sda", "nvme0n1",
	// "mmcblk0", "vda". Empty when the filesystem has no block device
	// (tmpfs, overlay, NFS) or it could not be resolved.
	Name string `json:"name"`
	// MajMin is the filesystem's own device number ("259:2").
	MajMin string `json:"maj_min"`
	// Partition is the partition the filesystem is on ("nvme0n1p2"), if any.
	Partition string `json:"partition,omitempty"`
	// Holders are the stacked devices between the filesystem and the disk,
	// top first ("dm-0", "md0", "loop1").
	Holders []string `json:"holders,omitempty"`
	// Bus is how the disk is attached: nvme, mmc, virtio, xen, ata, scsi,
	// usb, ide, loop, ram or unknown.
	Bus       string `json:"bus"`
	Model     string `json:"model,omitempty"`
	Vendor    string `json:"vendor,omitempty"`
	Serial    string `json:"serial,omitempty"`
	MMCType   string `json:"mmc_type,omitempty"` // device/type of an mmcblk: SD, MMC, SDIO
	SizeBytes int64  `json:"size_bytes"`
	Removable bool   `json:"removable"`
	// Rotational is queue/rotational as the kernel reports it; it is a hint
	// only (virtio disks, USB bridges and SD readers often claim 1).
	Rotational    bool   `json:"rotational"`
	Scheduler     string `json:"scheduler,omitempty"` // the active one, e.g. "mq-deadline"
	LogicalBlock  int    `json:"logical_block_size"`
	PhysicalBlock int    `json:"physical_block_size"`
	MinIO         int    `json:"minimum_io_size"`
	OptimalIO     int    `json:"optimal_io_size"`
	NRRequests    int    `json:"nr_requests"`
	ReadAheadKB   int    `json:"read_ahead_kb"`
	WriteCache    string `json:"write_cache,omitempty"` // "write back" or "write through"
	// Others are further disks under a dm/md holder, when there is more
	// than one; Name is the most conservative of them.
	Others []string `json:"others,omitempty"`
}

// Info is what Discover learned about the data directory's storage and the
// host around it.
type Info struct {
	DataDir      string   `json:"data_dir"`
	MountPoint   string   `json:"mount_point"`
	FSType       string   `json:"fs_type"`
	MountSource  string   `json:"mount_source"`
	MountOptions []string `json:"mount_options,omitempty"`
	Device       Device   `json:"device"`

	// Kind, WearSensitive and Reasons are the classification from the
	// device alone (Classify with no measurements).
	Kind          Kind     `json:"kind"`
	WearSensitive bool     `json:"wear_sensitive"`
	Reasons       []string `json:"reasons"`

	TotalBytes uint64 `json:"total_bytes"` // of the filesystem
	FreeBytes  uint64 `json:"free_bytes"`  // available to unprivileged users

	// RAMBytes is the memory the process may use: the host's RAM or the
	// cgroup limit, whichever is lower.
	RAMBytes       uint64 `json:"ram_bytes"`
	HostRAMBytes   uint64 `json:"host_ram_bytes"`
	CgroupMemLimit uint64 `json:"cgroup_memory_limit,omitempty"` // 0: none
	// CPUs is the CPUs the process may use: the host's logical CPUs or the
	// cgroup quota, whichever is lower.
	CPUs           int    `json:"cpus"`
	HostCPUs       int    `json:"host_cpus"`
	Kernel         string `json:"kernel"`
	Virtualization string `json:"virtualization,omitempty"`

	// Warnings are facts an operator should act on (mount options, a
	// filesystem without a block device).
	Warnings []string `json:"warnings,omitempty"`
}

// Discover describes the storage under dataDir, which need not exist yet
// (its nearest existing ancestor is examined). It reads; it never writes.
func Discover(dataDir string, opts Options) (Info, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return Info{}, fmt.Errorf("discover %s: %w", dataDir, err)
	}
	info := Info{DataDir: abs}
	existing, err := existingAncestor(abs)
	if err != nil {
		return Info{}, fmt.Errorf("discover %s: %w", dataDir, err)
	}

	usage, err := statfs(opts.gopsutil(), existing)
	if err != nil {
		return Info{}, fmt.Errorf("discover %s: statfs: %w", dataDir, err)
	}
	info.TotalBytes, info.FreeBytes = usage.Total, usage.Free

	mounts, err := readMountinfo(opts.path("/proc/self/mountinfo"))
	if err != nil {
		return Info{}, fmt.Errorf("discover %s: %w", dataDir, err)
	}
	var st unix.Stat_t
	stDev := ""
	if err := unix.Stat(existing, &st); err == nil {
		stDev = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	}
	m, ok := mountFor(mounts, existing, stDev)
	if !ok {
		return Info{}, fmt.Errorf("discover %s: no mount in %s holds it", dataDir, opts.path("/proc/self/mountinfo"))
	}
	info.MountPoint, info.FSType, info.MountSource, info.MountOptions = m.point, m.fsType, m.source, m.options
	if info.FSType == "" {
		info.FSType = usage.Fstype
	}

	r := resolver{opts: opts, mounts: mounts}
	dev, err := r.forMount(m, 0)
	if err != nil {
		info.Warnings = append(info.Warnings, "block device not resolved: "+err.Error())
	}
	info.Device = dev
	info.Kind, info.WearSensitive, info.Reasons = Classify(dev, nil)
	info.Warnings = append(info.Warnings, mountWarnings(m)...)
	if info.Kind == KindNVMe && dev.Scheduler != "" && dev.Scheduler != "none" {
		info.Warnings = append(info.Warnings, fmt.Sprintf("%s uses the %s I/O scheduler; none suits NVMe", dev.Name, dev.Scheduler))
	}

	if err := discoverHost(&info, opts); err != nil {
		return Info{}, fmt.Errorf("discover %s: %w", dataDir, err)
	}
	return info, nil
}

// discoverHost fills in RAM, CPUs, kernel and virtualization.
func discoverHost(info *Info, opts Options) error {
	ctx := opts.gopsutil()
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return fmt.Errorf("read memory: %w", err)
	}
	info.HostRAMBytes = vm.Total
	info.RAMBytes = vm.Total
	if limit := cgroupLimit(opts, "memory"); limit > 0 {
		info.CgroupMemLimit = limit
		info.RAMBytes = min(info.RAMBytes, limit)
	}
	n, err := cpu.CountsWithContext(ctx, true)
	if err != nil || n < 1 {
		n = 1
	}
	info.HostCPUs, info.CPUs = n, n
	if q := cgroupLimit(opts, "cpu"); q > 0 && int(q) < n {
		info.CPUs = int(q)
	}
	info.Kernel = strings.TrimSpace(readString(opts.path("/proc/sys/kernel/osrelease")))
	if sys, role, err := host.VirtualizationWithContext(ctx); err == nil && sys != "" {
		info.Virtualization = sys + " " + role
	}
	return nil
}

// existingAncestor returns the nearest existing directory at or above p,
// with symlinks resolved.
func existingAncestor(p string) (string, error) {
	for dir := p; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); err == nil {
			return filepath.EvalSymlinks(dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("no existing ancestor of %s", p)
		}
	}
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	majMin  string
	point   string
	options []string
	fsType  string
	source  string
}

// readMountinfo parses a mountinfo file (proc(5)).
func readMountinfo(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 6 || sep < 6 || len(fields) < sep+3 {
			continue
		}
		out = append(out, mount{
			majMin:  fields[2],
			point:   unescapeMount(fields[4]),
			options: strings.Split(fields[5], ","),
			fsType:  fields[sep+1],
			source:  unescapeMount(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountFor picks the mount holding path: among mounts whose mount point
// is path or an ancestor, those with the device stat reported win, then
// the longest mount point, then the latest (it shadows earlier ones).
func mountFor(mounts []mount, path, stDev string) (mount, bool) {
	best, bestScore := -1, -1
	for i, m := range mounts {
		if !within(path, m.point) {
			continue
		}
		score := len(m.point) * 2
		if m.majMin == stDev {
			score += 1 << 20
		}
		if score >= bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return mount{}, false
	}
	return mounts[best], true
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// mountWarnings lists mount options and filesystems that hurt a log.
func mountWarnings(m mount) []string {
	var w []string
	has := func(o string) bool {
		for _, x := range m.options {
			if x == o {
				return true
			}
		}
		return false
	}
	switch m.fsType {
	case "tmpfs", "ramfs":
		w = append(w, m.fsType+" is memory: data does not survive a reboot")
	case "nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs":
		w = append(w, m.fsType+" is a network or host-shared filesystem: fsync and locking semantics differ")
	case "overlay", "fuse", "fuseblk":
		w = append(w, m.fsType+" adds a layer over the real disk: measurements describe the stack, not the device")
	}
	if has("sync") || has("dirsync") {
		w = append(w, "mounted sync: every write is synchronous, group commit cannot batch")
	}
	if !has("noatime") && !has("relatime") && !has("lazytime") && m.fsType != "tmpfs" {
		w = append(w, "mounted without noatime/relatime: reads write access times")
	}
	return w
}

// resolver walks sysfs from a filesystem to the disk under it.
type resolver struct {
	opts   Options
	mounts []mount
}

// maxDepth bounds holder and loop chains.
const maxDepth = 8

// forMount resolves the block device under a mount.
func (r resolver) forMount(m mount, depth int) (Device, error) {
	dir := ""
	major, _, _ := strings.Cut(m.majMin, ":")
	if major != "0" && m.majMin != "" {
		p := r.opts.path("/sys/dev/block/" + m.majMin)
		if d, err := filepath.EvalSymlinks(p); err == nil {
			dir = d
		}
	}
	if dir == "" && strings.HasPrefix(m.source, "/dev/") {
		// Device number 0:N (btrfs, some stacked filesystems): go by the
		// mount source, following /dev/mapper and /dev/disk links.
		name := filepath.Base(m.source)
		if target, err := filepath.EvalSymlinks(r.opts.path(m.source)); err == nil {
			name = filepath.Base(target)
		}
		if d, err := filepath.EvalSymlinks(r.opts.path("/sys/class/block/" + name)); err == nil {
			dir = d
		}
	}
	if dir == "" {
		return Device{MajMin: m.majMin}, fmt.Errorf("%s on %s (%s) has no block device in sysfs", m.fsType, m.point, m.source)
	}
	dev, err := r.fromSysfs(dir, depth)
	dev.MajMin = m.majMin
	return dev, err
}

// fromSysfs resolves a sysfs block directory (disk, partition or holder) to
// the disk the data lives on.
func (r resolver) fromSysfs(dir string, depth int) (Device, error) {
	if depth > maxDepth {
		return Device{}, fmt.Errorf("device stack deeper than %d at %s", maxDepth, dir)
	}
	partition := ""
	if exists(filepath.Join(dir, "partition")) {
		partition = filepath.Base(dir)
		dir = filepath.Dir(dir)
	}
	name := filepath.Base(dir)

	// A holder (device mapper, md RAID): classify what it sits on.
	if slaves, _ := os.ReadDir(filepath.Join(dir, "slaves")); len(slaves) > 0 {
		var devs []Device
		var errs []error
		for _, s := range slaves {
			d, err := filepath.EvalSymlinks(filepath.Join(dir, "slaves", s.Name()))
			if err != nil {
				errs = append(errs, fmt.Errorf("slave %s of %s: %w", s.Name(), name, err))
				continue
			}
			dev, err := r.fromSysfs(d, depth+1)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			devs = append(devs, dev)
		}
		if len(devs) == 0 {
			return Device{Name: name, Bus: "unknown"}, errors.Join(errs...)
		}
		pick := mostConservative(devs)
		pick.Holders = append([]string{name}, pick.Holders...)
		for _, d := range devs {
			if d.Name != pick.Name {
				pick.Others = append(pick.Others, d.Name)
			}
		}
		return pick, nil
	}

	// A loop device: follow its backing file to the filesystem under it.
	if strings.HasPrefix(name, "loop") {
		backing := strings.TrimSpace(readString(filepath.Join(dir, "loop", "backing_file")))
		if backing != "" {
			var st unix.Stat_t
			stDev := ""
			if err := unix.Stat(backing, &st); err == nil {
				stDev = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
			}
			if m, ok := mountFor(r.mounts, backing, stDev); ok {
				dev, err := r.forMount(m, depth+1)
				if err == nil {
					dev.Holders = append([]string{name}, dev.Holders...)
					return dev, nil
				}
			}
		}
	}

	dev := readDevice(dir)
	dev.Partition = partition
	return dev, nil
}

// mostConservative returns the device of the slowest, most wear-prone
// kind among devs: a mirror of an SD card and an SSD is as slow as the
// card.
func mostConservative(devs []Device) Device {
	best := devs[0]
	bestRank := -1
	for _, d := range devs {
		k, _, _ := Classify(d, nil)
		if r := conservativeRank(k); r > bestRank {
			best, bestRank = d, r
		}
	}
	return best
}

// readDevice reads a whole disk's attributes from its sysfs directory.
func readDevice(dir string) Device {
	name := filepath.Base(dir)
	q := func(attr string) string { return strings.TrimSpace(readString(filepath.Join(dir, "queue", attr))) }
	d := Device{
		Name:          name,
		Rotational:    q("rotational") == "1",
		Scheduler:     activeScheduler(q("scheduler")),
		LogicalBlock:  atoi(q("logical_block_size")),
		PhysicalBlock: atoi(q("physical_block_size")),
		MinIO:         atoi(q("minimum_io_size")),
		OptimalIO:     atoi(q("optimal_io_size")),
		NRRequests:    atoi(q("nr_requests")),
		ReadAheadKB:   atoi(q("read_ahead_kb")),
		WriteCache:    q("write_cache"),
		Removable:     strings.TrimSpace(readString(filepath.Join(dir, "removable"))) == "1",
	}
	if sectors, err := strconv.ParseInt(strings.TrimSpace(readString(filepath.Join(dir, "size"))), 10, 64); err == nil && sectors > 0 && sectors < math.MaxInt64/512 {
		d.SizeBytes = sectors * 512
	}
	first := func(files ...string) string {
		for _, f := range files {
			if s := strings.TrimSpace(readString(filepath.Join(dir, f))); s != "" {
				return s
			}
		}
		return ""
	}
	d.Model = first("device/model", "device/name")
	d.Vendor = first("device/vendor")
	d.Serial = first("device/serial", "serial", "device/wwid", "wwid", "device/cid")
	real, _ := filepath.EvalSymlinks(dir)
	d.Bus = busOf(name, real+"/")
	if d.Bus == "mmc" {
		d.MMCType = first("device/type")
	}
	return d
}

// busOf names how a disk is attached, from its name and sysfs path.
func busOf(name, real string) string {
	switch {
	case strings.HasPrefix(name, "nvme") || strings.Contains(real, "/nvme/"):
		return "nvme"
	case strings.HasPrefix(name, "mmcblk") || strings.Contains(real, "/mmc_host/"):
		return "mmc"
	case strings.HasPrefix(name, "loop"):
		return "loop"
	case strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "pmem"):
		return "ram"
	case strings.Contains(real, "/usb"):
		return "usb"
	case strings.HasPrefix(name, "vd") || strings.Contains(real, "/virtio"):
		return "virtio"
	case strings.HasPrefix(name, "xvd"):
		return "xen"
	case strings.HasPrefix(name, "hd"):
		return "ide"
	case strings.Contains(real, "/ata"):
		return "ata"
	case strings.HasPrefix(name, "sd"):
		return "scsi"
	}
	return "unknown"
}

// activeScheduler returns the bracketed entry of queue/scheduler
// ("none [mq-deadline] kyber" -> "mq-deadline").
func activeScheduler(s string) string {
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return strings.TrimSpace(s)
}

// cgroupLimit returns the cgroup memory limit in bytes (what "memory"
// asks) or the CPU quota in whole CPUs, rounded up ("cpu"); 0 means none.
// Every level from the process's cgroup up to the root counts, under
// cgroup v2 and v1.
func cgroupLimit(opts Options, what string) uint64 {
	data := readString(opts.path("/proc/self/cgroup"))
	var limit uint64
	take := func(v uint64) {
		if v > 0 && (limit == 0 || v < limit) {
			limit = v
		}
	}
	for _, line := range strings.Split(data, "\n") {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, cgPath := parts[1], parts[2]
		switch {
		case parts[0] == "0" && controllers == "":
			base := opts.path("/sys/fs/cgroup")
			walkCgroup(base, cgPath, func(dir string) {
				if what == "memory" {
					take(parseLimit(readString(filepath.Join(dir, "memory.max"))))
				} else {
					take(parseCPUMax(readString(filepath.Join(dir, "cpu.max"))))
				}
			})
		case what == "memory" && hasController(controllers, "memory"):
			base := opts.path("/sys/fs/cgroup/memory")
			walkCgroup(base, cgPath, func(dir string) {
				take(parseLimit(readString(filepath.Join(dir, "memory.limit_in_bytes"))))
			})
		case what == "cpu" && hasController(controllers, "cpu"):
			for _, base := range []string{opts.path("/sys/fs/cgroup/cpu,cpuacct"), opts.path("/sys/fs/cgroup/cpu")} {
				walkCgroup(base, cgPath, func(dir string) {
					quota := strings.TrimSpace(readString(filepath.Join(dir, "cpu.cfs_quota_us")))
					period := strings.TrimSpace(readString(filepath.Join(dir, "cpu.cfs_period_us")))
					take(parseCPUMax(quota + " " + period))
				})
			}
		}
	}
	return limit
}

// walkCgroup calls fn for base/cgPath and each ancestor up to base. In a
// cgroup namespace the process's path may not exist under base; the levels
// that do exist still count.
func walkCgroup(base, cgPath string, fn func(dir string)) {
	p := filepath.Clean("/" + cgPath)
	for {
		dir := filepath.Join(base, p)
		if exists(dir) {
			fn(dir)
		}
		if p == "/" {
			return
		}
		p = filepath.Dir(p)
	}
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// noLimit is the threshold above which a cgroup v1 memory limit means
// "unlimited" (the kernel reports PAGE_COUNTER_MAX pages).
const noLimit = 1 << 60

// parseLimit parses memory.max or memory.limit_in_bytes; 0 means none.
func parseLimit(s string) uint64 {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v >= noLimit {
		return 0
	}
	return v
}

// parseCPUMax parses "quota period" (cpu.max, or v1's two files joined)
// into whole CPUs rounded up; 0 means none.
func parseCPUMax(s string) uint64 {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err1 := strconv.ParseInt(f[0], 10, 64)
	period, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0
	}
	return uint64((quota + period - 1) / period)
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}
