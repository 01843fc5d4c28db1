package disk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ProbeVersion changes when the probe measures differently; a stored
// profile from another version is re-probed.
const ProbeVersion = 1

// DefaultBudget is the probe's default time budget.
const DefaultBudget = 30 * time.Second

// Limits of the probe's test files.
const (
	maxProbeFile = 1 << 30  // never more than 1 GiB
	minProbeFile = 16 << 20 // nor less than 16 MiB
	probeMinFree = 64 << 20 // refuse to probe with less free space
)

// minSlice is the least time a probe step gets.
const minSlice = 20 * time.Millisecond

// SyncSizes are the batch sizes of the write+fdatasync curve.
var SyncSizes = []int{4 << 10, 64 << 10, 256 << 10, 1 << 20}

// Latency is a duration that reads well in JSON ("1.35ms").
type Latency time.Duration

// D returns l as a time.Duration.
func (l Latency) D() time.Duration { return time.Duration(l) }

func (l Latency) String() string { return time.Duration(l).Round(time.Microsecond).String() }

// MarshalText writes l like time.Duration.String.
func (l Latency) MarshalText() ([]byte, error) { return []byte(time.Duration(l).String()), nil }

// UnmarshalText parses what MarshalText wrote.
func (l *Latency) UnmarshalText(b []byte) error {
	d, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parse latency: %w", err)
	}
	*l = Latency(d)
	return nil
}

// SyncPoint is the latency of one write of Bytes followed by fdatasync.
type SyncPoint struct {
	Bytes   int     `json:"bytes"`
	Samples int     `json:"samples"`
	P50     Latency `json:"p50"`
	P99     Latency `json:"p99"`
	Max     Latency `json:"max"`
	// BytesPerSec is Bytes / P50: the throughput of back-to-back batches
	// of this size.
	BytesPerSec float64 `json:"bytes_per_sec"`
}

// ReadPoint is the random 4 KiB read rate.
type ReadPoint struct {
	// Method is "o_direct" or "fadvise" (buffered reads, each page
	// dropped from the cache before it is read).
	Method  string  `json:"method"`
	Samples int     `json:"samples"`
	IOPS    float64 `json:"iops_qd1"`
	P50     Latency `json:"p50"`
	P99     Latency `json:"p99"`
	// Depth and DeepIOPS are the rate with Depth reads in flight.
	Depth    int     `json:"depth"`
	DeepIOPS float64 `json:"iops_deep"`
}

// Measurements are the probe's results.
type Measurements struct {
	ProbeVersion int       `json:"probe_version"`
	Started      time.Time `json:"started"`
	Elapsed      Latency   `json:"elapsed"`
	Budget       Latency   `json:"budget"`
	FileCap      int64     `json:"file_cap_bytes"`

	// SeqWriteBytesPerSec is buffered 1 MiB writes with an fdatasync
	// every 8 MiB, end to end.
	SeqWriteBytesPerSec float64 `json:"seq_write_bytes_per_sec"`
	SeqWriteBytes       int64   `json:"seq_write_bytes"`
	// SeqReadBytesPerSec is 1 MiB reads of that data after FADV_DONTNEED.
	SeqReadBytesPerSec float64 `json:"seq_read_bytes_per_sec"`

	// Sync is the write+fdatasync curve over SyncSizes, appending to a
	// growing file as a log does.
	Sync []SyncPoint `json:"sync"`
	// DirectSync is the same for aligned 1 MiB O_DIRECT writes; nil when
	// the filesystem refuses O_DIRECT.
	DirectSync *SyncPoint `json:"direct_sync,omitempty"`
	// Growing and Preallocated are 4 KiB appends + fdatasync, alternated,
	// to a file that grows and to one preallocated with fallocate
	// (FALLOC_FL_KEEP_SIZE, as segments are).
	Growing           SyncPoint `json:"growing"`
	Preallocated      SyncPoint `json:"preallocated"`
	PreallocSupported bool      `json:"prealloc_supported"`

	RandRead ReadPoint `json:"rand_read"`

	// Notes say what was skipped or cut short, and why.
	Notes []string `json:"notes,omitempty"`
}

// SyncAt returns the sync curve's point for a batch of n bytes.
func (m *Measurements) SyncAt(n int) (SyncPoint, bool) {
	if m == nil {
		return SyncPoint{}, false
	}
	for _, p := range m.Sync {
		if p.Bytes == n && p.Samples > 0 {
			return p, true
		}
	}
	return SyncPoint{}, false
}

// Prober runs a probe; Probe is the real one. Ensure takes another in
// tests.
type Prober func(ctx context.Context, dir string, budget time.Duration, progress func(step string, frac float64)) (Measurements, error)

// probeFilePrefix names the probe's files, so a probe cut short by a crash
// is cleaned up by the next.
const probeFilePrefix = ".eddy-io-probe-"

// Probe measures the disk under dir within budget (DefaultBudget when 0),
// writing at most min(1 GiB, 2% of the free space) of test data into dir.
// progress, when not nil, is told each step's name and the fraction of the
// whole probe done (0..1). Every file the probe creates is removed before it
// returns. A cancelled ctx ends the probe early with ctx's error.
func Probe(ctx context.Context, dir string, budget time.Duration, progress func(step string, frac float64)) (Measurements, error) {
	if budget <= 0 {
		budget = DefaultBudget
	}
	if progress == nil {
		progress = func(string, float64) {}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Measurements{}, fmt.Errorf("probe %s: %w", dir, err)
	}
	unlock, err := lockProbe(dir)
	if err != nil {
		return Measurements{}, fmt.Errorf("probe %s: %w", dir, err)
	}
	defer unlock()
	removeStale(dir)
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return Measurements{}, fmt.Errorf("probe %s: statfs: %w", dir, err)
	}
	free := int64(sfs.Bavail) * int64(sfs.Bsize)
	if free < probeMinFree {
		return Measurements{}, fmt.Errorf("probe %s: only %d bytes free, need %d", dir, free, probeMinFree)
	}
	fileCap := min(int64(maxProbeFile), max(int64(minProbeFile), free/50), free/4)

	p := &prober{
		ctx: ctx, dir: dir, progress: progress,
		start: time.Now(), budget: budget, fileCap: fileCap,
		buf: alignedBuffer(1 << 20),
	}
	fillRandom(p.buf)
	defer p.cleanup()
	m := Measurements{
		ProbeVersion: ProbeVersion,
		Started:      p.start.UTC().Truncate(time.Second),
		Budget:       Latency(budget),
		FileCap:      fileCap,
	}
	// Shares of the budget per step; the steps run in this order.
	steps := []struct {
		name  string
		share float64
		run   func(*Measurements, time.Duration) error
	}{
		{"sequential write", 0.20, p.seqWrite},
		{"sync curve", 0.32, p.syncCurve},
		{"direct sync", 0.08, p.directSync},
		{"growing vs preallocated", 0.16, p.growVsPrealloc},
		{"random read", 0.18, p.randRead},
		{"sequential read", 0.06, p.seqRead},
	}
	done := 0.0
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return Measurements{}, fmt.Errorf("probe %s: %w", dir, err)
		}
		p.step, p.stepBase, p.stepShare = s.name, done, s.share
		p.reported = max(p.reported, done)
		progress(s.name, p.reported)
		// A step whose share is gone still does its minimum (a few
		// operations), so every measurement exists; the budget is then
		// overrun by that much.
		slice := time.Duration(float64(budget) * s.share)
		if left := budget - time.Since(p.start); left < slice {
			slice = max(left, minSlice)
			m.Notes = append(m.Notes, fmt.Sprintf("%s: cut to %s, budget nearly spent", s.name, slice.Round(time.Millisecond)))
		}
		if err := s.run(&m, slice); err != nil {
			if ctx.Err() != nil {
				return Measurements{}, fmt.Errorf("probe %s: %w", dir, ctx.Err())
			}
			return Measurements{}, fmt.Errorf("probe %s: %s: %w", dir, s.name, err)
		}
		done += s.share
	}
	progress("done", 1)
	m.Elapsed = Latency(time.Since(p.start))
	if err := p.cleanup(); err != nil {
		return Measurements{}, fmt.Errorf("probe %s: %w", dir, err)
	}
	return m, nil
}

// prober holds one probe's state.
type prober struct {
	ctx       context.Context
	dir       string
	progress  func(string, float64)
	start     time.Time
	budget    time.Duration
	fileCap   int64
	buf       []byte // 1 MiB, 4 KiB-aligned, random bytes
	files     []string
	seqFile   string // the sequential-write file, read back later
	seqSize   int64
	step      string
	stepBase  float64
	stepShare float64
	lastTick  time.Time
	reported  float64 // the highest fraction reported: progress never goes back
}

// tick reports progress within the current step (frac of the step done),
// at most every 50 ms.
func (p *prober) tick(frac float64) {
	now := time.Now()
	if now.Sub(p.lastTick) < 50*time.Millisecond {
		return
	}
	p.lastTick = now
	f := max(p.stepBase+p.stepShare*min(max(frac, 0), 1), p.reported)
	p.reported = f
	p.progress(p.step, f)
}

// create makes a new test file and remembers it for cleanup.
func (p *prober) create(name string, flags int) (*os.File, error) {
	path := filepath.Join(p.dir, fmt.Sprintf("%s%d-%s", probeFilePrefix, os.Getpid(), name))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create test file: %w", err)
	}
	p.files = append(p.files, path)
	return f, nil
}

// cleanup removes every test file; it may run twice.
func (p *prober) cleanup() error {
	var errs []error
	for _, f := range p.files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove test file: %w", err))
		}
	}
	p.files = nil
	return errors.Join(errs...)
}

// lockProbe takes an exclusive lock on the directory itself (no file is
// created), so one probe at a time measures it: a second would skew the
// first's figures and, cleaning up stale files, delete its test files.
// The lock goes when the process does, so a crashed probe never holds it.
func lockProbe(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errors.New("another probe of this directory is running")
		}
		return nil, fmt.Errorf("lock: %w", &os.PathError{Op: "flock", Path: dir, Err: err})
	}
	return func() { f.Close() }, nil
}

// removeStale deletes test files a crashed probe left behind; the caller
// holds the probe lock, so none of them belongs to a running probe.
func removeStale(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), probeFilePrefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// seqWrite writes 1 MiB blocks with an fdatasync every 8 MiB until the
// slice or the file cap runs out. The file stays for the read steps.
func (p *prober) seqWrite(m *Measurements, slice time.Duration) error {
	f, err := p.create("seq", 0)
	if err != nil {
		return err
	}
	defer f.Close()
	begin := time.Now()
	var n int64
	for n < p.fileCap && (n < 8<<20 || time.Since(begin) < slice) {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		if _, err := f.Write(p.buf); err != nil {
			return fmt.Errorf("write test file: %w", err)
		}
		n += int64(len(p.buf))
		if n%(8<<20) == 0 {
			if err := fdatasync(f); err != nil {
				return err
			}
		}
		p.tick(float64(time.Since(begin)) / float64(slice))
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	el := time.Since(begin)
	m.SeqWriteBytes = n
	m.SeqWriteBytesPerSec = float64(n) / el.Seconds()
	p.seqFile, p.seqSize = f.Name(), n
	if n >= p.fileCap && el < slice {
		m.Notes = append(m.Notes, fmt.Sprintf("sequential write: stopped at the %d-byte file cap", p.fileCap))
	}
	return nil
}

// syncCurve measures write+fdatasync for each of SyncSizes, appending to
// a fresh growing file per size.
func (p *prober) syncCurve(m *Measurements, slice time.Duration) error {
	per := slice / time.Duration(len(SyncSizes))
	for i, size := range SyncSizes {
		f, err := p.create(fmt.Sprintf("sync-%d", size), 0)
		if err != nil {
			return err
		}
		lat, err := p.repeat(per, p.fileCap/4/int64(size), func() error {
			if _, err := f.Write(p.buf[:size]); err != nil {
				return fmt.Errorf("write test file: %w", err)
			}
			return fdatasync(f)
		}, func(frac float64) { p.tick((float64(i) + frac) / float64(len(SyncSizes))) })
		f.Close()
		if err != nil {
			return err
		}
		m.Sync = append(m.Sync, summarize(size, lat))
	}
	return nil
}

// directSync measures aligned 1 MiB O_DIRECT writes + fdatasync.
func (p *prober) directSync(m *Measurements, slice time.Duration) error {
	f, err := p.create("direct", unix.O_DIRECT)
	if err != nil {
		m.Notes = append(m.Notes, "direct sync: O_DIRECT not supported here: "+err.Error())
		return nil
	}
	defer f.Close()
	size := len(p.buf)
	lat, err := p.repeat(slice, p.fileCap/4/int64(size), func() error {
		if _, err := f.Write(p.buf); err != nil {
			return fmt.Errorf("write test file (O_DIRECT): %w", err)
		}
		return fdatasync(f)
	}, p.tick)
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			m.Notes = append(m.Notes, "direct sync: O_DIRECT writes refused: "+err.Error())
			return nil
		}
		return err
	}
	pt := summarize(size, lat)
	m.DirectSync = &pt
	return nil
}

// growVsPrealloc alternates 4 KiB appends + fdatasync to a growing file
// and to a preallocated one, so background noise hits both alike.
func (p *prober) growVsPrealloc(m *Measurements, slice time.Duration) error {
	const size = 4 << 10
	grow, err := p.create("grow", 0)
	if err != nil {
		return err
	}
	defer grow.Close()
	pre, err := p.create("prealloc", 0)
	if err != nil {
		return err
	}
	defer pre.Close()
	chunk := min(int64(64<<20), p.fileCap/4)
	m.PreallocSupported = true
	if err := unix.Fallocate(int(pre.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, chunk); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("fallocate test file: %w", err)
		}
		m.PreallocSupported = false
		m.Notes = append(m.Notes, "growing vs preallocated: fallocate not supported: "+err.Error())
	}
	var g, q []time.Duration
	begin := time.Now()
	var written int64
	for (len(g) < 3 || time.Since(begin) < slice) && written+size <= chunk {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		for _, t := range []struct {
			f   *os.File
			out *[]time.Duration
		}{{grow, &g}, {pre, &q}} {
			t0 := time.Now()
			if _, err := t.f.Write(p.buf[:size]); err != nil {
				return fmt.Errorf("write test file: %w", err)
			}
			if err := fdatasync(t.f); err != nil {
				return err
			}
			*t.out = append(*t.out, time.Since(t0))
		}
		written += size
		p.tick(float64(time.Since(begin)) / float64(slice))
	}
	m.Growing, m.Preallocated = summarize(size, g), summarize(size, q)
	return nil
}

// randRead measures random 4 KiB reads over the sequential-write file at
// QD1, then with several reads in flight.
func (p *prober) randRead(m *Measurements, slice time.Duration) error {
	if p.seqFile == "" || p.seqSize < 1<<20 {
		m.Notes = append(m.Notes, "random read: no data file to read")
		return nil
	}
	const size = 4 << 10
	method := "o_direct"
	f, err := os.OpenFile(p.seqFile, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		method = "fadvise"
		f, err = os.Open(p.seqFile)
		if err != nil {
			return fmt.Errorf("open test file: %w", err)
		}
	}
	defer func() { f.Close() }()
	if method == "fadvise" {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	pages := p.seqSize / size
	readOne := func(buf []byte, rng *rand.Rand) error {
		off := rng.Int64N(pages) * size
		if method == "fadvise" {
			_ = unix.Fadvise(int(f.Fd()), off, size, unix.FADV_DONTNEED)
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read test file: %w", err)
		}
		return nil
	}
	// A first read tells whether this filesystem really serves O_DIRECT.
	rng := rand.New(rand.NewPCG(1, 2))
	buf := p.buf[:size]
	if err := readOne(buf, rng); err != nil {
		if method != "o_direct" || !errors.Is(err, unix.EINVAL) {
			return err
		}
		f.Close()
		method = "fadvise"
		if f, err = os.Open(p.seqFile); err != nil {
			return fmt.Errorf("open test file: %w", err)
		}
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
	}

	begin := time.Now()
	lat, err := p.repeat(slice/2, 1<<20, func() error { return readOne(buf, rng) }, func(frac float64) { p.tick(frac / 2) })
	if err != nil {
		return err
	}
	pt := summarize(size, lat)
	rp := ReadPoint{Method: method, Samples: pt.Samples, P50: pt.P50, P99: pt.P99}
	if el := time.Since(begin); el > 0 {
		rp.IOPS = float64(len(lat)) / el.Seconds()
	}

	// Deep queue: goroutines share the rest of the slice.
	depth := 16
	rp.Depth = depth
	var count atomic.Int64
	var firstErr error
	var mu sync.Mutex
	deadline := time.Now().Add(slice / 2)
	var wg sync.WaitGroup
	deepBegin := time.Now()
	for w := range depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := alignedBuffer(size)
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(deadline) && p.ctx.Err() == nil {
				if err := readOne(b, r); err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				count.Add(1)
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	tk := time.NewTicker(50 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case <-allDone:
			waiting = false
		case <-tk.C:
			p.tick(0.5 + float64(time.Since(deepBegin))/float64(slice))
		}
	}
	tk.Stop()
	if firstErr != nil {
		return firstErr
	}
	if err := p.ctx.Err(); err != nil {
		return err
	}
	rp.DeepIOPS = float64(count.Load()) / time.Since(deepBegin).Seconds()
	m.RandRead = rp
	return nil
}

// seqRead reads the sequential-write file back in 1 MiB blocks after
// dropping it from the page cache.
func (p *prober) seqRead(m *Measurements, slice time.Duration) error {
	if p.seqFile == "" {
		return nil
	}
	f, err := os.Open(p.seqFile)
	if err != nil {
		return fmt.Errorf("open test file: %w", err)
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	begin := time.Now()
	var n int64
	for n < p.seqSize && (n == 0 || time.Since(begin) < slice) {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		k, err := f.ReadAt(p.buf, n)
		n += int64(k)
		if err != nil {
			break // EOF or a short file: what was read counts
		}
		p.tick(float64(time.Since(begin)) / float64(slice))
	}
	if el := time.Since(begin); n > 0 && el > 0 {
		m.SeqReadBytesPerSec = float64(n) / el.Seconds()
	}
	return nil
}

// repeat runs op until slice has passed (after at least 3 runs) or it ran
// limit times, and returns each run's latency.
func (p *prober) repeat(slice time.Duration, limit int64, op func() error, tick func(float64)) ([]time.Duration, error) {
	limit = max(limit, 3)
	var lat []time.Duration
	begin := time.Now()
	for int64(len(lat)) < limit && (len(lat) < 3 || time.Since(begin) < slice) {
		if err := p.ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := op(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
		tick(float64(time.Since(begin)) / float64(slice))
	}
	return lat, nil
}

// summarize turns latencies of size-byte operations into a SyncPoint.
func summarize(size int, lat []time.Duration) SyncPoint {
	pt := SyncPoint{Bytes: size, Samples: len(lat)}
	if len(lat) == 0 {
		return pt
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	pt.P50 = Latency(percentile(s, 0.50))
	pt.P99 = Latency(percentile(s, 0.99))
	pt.Max = Latency(s[len(s)-1])
	if pt.P50 > 0 {
		pt.BytesPerSec = float64(size) / pt.P50.D().Seconds()
	}
	return pt
}

// percentile returns the q-th value of sorted s (nearest rank).
func percentile(s []time.Duration, q float64) time.Duration {
	i := int(float64(len(s))*q+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// fdatasync syncs f's data, retrying on EINTR.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
		}
		return nil
	}
}

// alignedBuffer returns n bytes aligned to 4 KiB, as O_DIRECT needs.
func alignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1)); r != 0 {
		off = align - r
	}
	return b[off : off+n : off+n]
}

// fillRandom fills b with incompressible bytes, so devices that compress
// or deduplicate do not flatter the result.
func fillRandom(b []byte) {
	r := rand.New(rand.NewPCG(0x65646479, 0x70726f6265))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
