package disk

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
)

// The keys Derive sets. The flush.* and log.* keys are configuration keys
// and go into io-profile.toml; the io.* keys are advice the storage engine
// has no configuration key for yet: they are kept in io-profile.json and
// printed by eddy tune, and WriteTOML writes them as soon as the
// configuration schema knows them.
const (
	KeySegmentBytes     = "log.segment_bytes"
	KeyPreallocateBytes = "log.preallocate_bytes"
	KeyMaxBatchBytes    = "flush.max_batch_bytes"
	KeyMaxDelay         = "flush.max_delay"
	KeyMaxInflight      = "flush.max_inflight"
	KeySyncConcurrency  = "flush.sync_concurrency"
	KeyWriteBuffer      = "io.write_buffer_bytes"
	KeyReadConcurrency  = "io.read_concurrency"
	KeyFadvise          = "io.fadvise"
)

// Values of io.fadvise: what happens to sealed segments in the page cache.
// Catch-up scans always use FADV_SEQUENTIAL and index probes FADV_RANDOM.
const (
	FadviseDropSealed = "drop-sealed" // FADV_DONTNEED a segment once sealed and flushed
	FadviseKeep       = "keep"        // leave sealed segments to the page cache
)

// Setting is one derived value and the rule that chose it.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"` // in configuration syntax: "4MiB", "5ms", "8"
	Rule  string `json:"rule"`
}

// Basis says what a profile was derived from.
type Basis string

// The bases of a profile.
const (
	BasisMeasured       Basis = "measured"       // the probe's results and the classification
	BasisClassification Basis = "classification" // the classification alone
)

// Profile is a derived io-profile: the settings for one host's data disk,
// with everything they were derived from. Its JSON form is io-profile.json.
type Profile struct {
	Version       int           `json:"version"`
	Generated     time.Time     `json:"generated"`
	Fingerprint   Fingerprint   `json:"fingerprint"`
	Kind          Kind          `json:"kind"`
	WearSensitive bool          `json:"wear_sensitive"`
	Reasons       []string      `json:"reasons"`
	Basis         Basis         `json:"basis"`
	Info          Info          `json:"inputs"`
	Measurements  *Measurements `json:"measurements,omitempty"`
	Settings      []Setting     `json:"settings"`
	Notes         []string      `json:"notes,omitempty"`
}

// ProfileVersion is the version of the Profile's JSON form and of the
// derivation rules; a stored profile of another version is re-derived.
const ProfileVersion = 1

// Get returns the setting for key.
func (p Profile) Get(key string) (Setting, bool) {
	for _, s := range p.Settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// class holds a kind's defaults and bounds, used as they are when nothing
// was measured and as clamps around measured values.
type class struct {
	segment            int64         // segment size when nothing was measured
	segmentCap         int64         // largest segment
	batch              int64         // max_batch_bytes when nothing was measured
	batchFloor         int64         // a measured knee is raised to this
	delay              time.Duration // max_delay when nothing was measured
	delayMin, delayMax time.Duration // clamp of the measured max_delay
	prealloc           int64         // preallocation chunk when nothing was measured
	writeBuf           int64         // write buffer when nothing was measured
	readCap            int           // most concurrent reads
	syncConc           int           // flush.sync_concurrency
	inflight           int           // flush.max_inflight
	why                string        // the kind's character, for rule texts
}

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// classes are the per-kind rules; docs/TUNING.md has the same table.
var classes = map[Kind]class{
	KindSD: {
		segment: 64 * mib, segmentCap: 64 * mib,
		batch: 4 * mib, batchFloor: 2 * mib,
		delay: 20 * time.Millisecond, delayMin: 10 * time.Millisecond, delayMax: 50 * time.Millisecond,
		prealloc: 16 * mib, writeBuf: 1 * mib, readCap: 2, syncConc: 1, inflight: 1,
		why: "SD cards sync slowly and wear with every sync: fewer, larger syncs and small segments",
	},
	KindEMMC: {
		segment: 128 * mib, segmentCap: 128 * mib,
		batch: 2 * mib, batchFloor: 1 * mib,
		delay: 10 * time.Millisecond, delayMin: 5 * time.Millisecond, delayMax: 20 * time.Millisecond,
		prealloc: 16 * mib, writeBuf: 1 * mib, readCap: 4, syncConc: 2, inflight: 1,
		why: "eMMC wears like an SD card but syncs faster: larger syncs, modest segments",
	},
	KindHDD: {
		segment: 512 * mib, segmentCap: gib,
		batch: 2 * mib, batchFloor: 1 * mib,
		delay: 10 * time.Millisecond, delayMin: 5 * time.Millisecond, delayMax: 30 * time.Millisecond,
		prealloc: 64 * mib, writeBuf: 4 * mib, readCap: 4, syncConc: 2, inflight: 1,
		why: "a spinning disk pays a seek per sync: large batches, few parallel syncs, contiguous files",
	},
	KindSSD: {
		segment: 512 * mib, segmentCap: gib,
		batch: 1 * mib, batchFloor: 256 * kib,
		delay: 2 * time.Millisecond, delayMin: 1 * time.Millisecond, delayMax: 10 * time.Millisecond,
		prealloc: 32 * mib, writeBuf: 2 * mib, readCap: 16, syncConc: 4, inflight: 2,
		why: "an SSD syncs in about a millisecond and serves parallel I/O",
	},
	KindNVMe: {
		segment: gib, segmentCap: gib,
		batch: 4 * mib, batchFloor: 2 * mib,
		delay: 1 * time.Millisecond, delayMin: 500 * time.Microsecond, delayMax: 2 * time.Millisecond,
		prealloc: 64 * mib, writeBuf: 8 * mib, readCap: 32, syncConc: 8, inflight: 4,
		why: "NVMe has deep queues and fast syncs: short max_delay, large batches, many parallel syncs",
	},
	KindUnknown: {
		segment: 256 * mib, segmentCap: gib,
		batch: 1 * mib, batchFloor: 256 * kib,
		delay: 2 * time.Millisecond, delayMin: 1 * time.Millisecond, delayMax: 10 * time.Millisecond,
		prealloc: 0, writeBuf: 1 * mib, readCap: 8, syncConc: 4, inflight: 2,
		why: "an unknown medium keeps the built-in defaults",
	},
}

// Rule constants, shared with docs/TUNING.md.
const (
	kneeShare       = 0.5                    // the knee reaches this share of sequential bandwidth
	segmentSeconds  = 30                     // a segment holds this many seconds of full-speed writes
	minSegment      = 16 << 20               // never smaller segments
	maxBatch        = 16 << 20               // never larger batches
	preallocGain    = 0.10                   // preallocation must cut p99 by this share
	preallocSeconds = 0.25                   // a preallocation chunk is this much write time
	minWriteBuf     = 256 << 10              // smallest write buffer
	maxWriteBuf     = 8 << 20                // largest write buffer
	deepGain        = 1.2                    // deep reads must beat QD1 by this factor
	smallRAM        = 4 << 30                // at or below: drop sealed segments from the cache
	maxReadConc     = 32                     // never more concurrent reads
	delayStep       = 100 * time.Microsecond // max_delay is rounded to this
)

// cowFS are filesystems where fallocate gains little or nothing.
var cowFS = []string{"btrfs", "zfs", "bcachefs", "tmpfs", "ramfs", "overlay", "nfs", "nfs4", "f2fs"}

// Derive turns the facts and, when not nil, the probe's measurements into
// settings. It is pure: the same inputs give the same profile, and it reads
// no clock (Generated is left zero).
func Derive(info Info, m *Measurements) Profile {
	kind, wear, reasons := Classify(info.Device, m)
	c := classes[kind]
	p := Profile{
		Version:       ProfileVersion,
		Fingerprint:   FingerprintOf(info),
		Kind:          kind,
		WearSensitive: wear,
		Reasons:       reasons,
		Basis:         BasisClassification,
		Info:          info,
		Measurements:  m,
	}
	if m != nil {
		p.Basis = BasisMeasured
	}
	set := func(key, value, format string, args ...any) {
		p.Settings = append(p.Settings, Setting{Key: key, Value: value, Rule: fmt.Sprintf(format, args...)})
	}
	bw := 0.0
	if m != nil {
		bw = m.SeqWriteBytesPerSec
	}

	// log.segment_bytes
	seg, rule := c.segment, fmt.Sprintf("%s default for %s", size(c.segment), kind)
	if bw > 0 {
		seg = int64(bw * segmentSeconds)
		rule = fmt.Sprintf("%d s of the measured %s/s sequential writes", segmentSeconds, human(bw))
	}
	if seg > c.segmentCap {
		seg, rule = c.segmentCap, rule+fmt.Sprintf(", capped at %s for %s", size(c.segmentCap), kind)
	}
	if lim := int64(info.FreeBytes / 64); info.FreeBytes > 0 && seg > lim {
		seg, rule = lim, rule+", capped at 1/64 of the free space"
	}
	if lim := int64(info.RAMBytes / 8); info.RAMBytes > 0 && seg > lim {
		seg, rule = lim, rule+", capped at 1/8 of the usable RAM"
	}
	if seg < minSegment {
		seg, rule = minSegment, rule+", raised to the 16MiB minimum"
	}
	seg = floorPow2(seg)
	set(KeySegmentBytes, size(seg), "%s", rule)

	// flush.max_batch_bytes
	batch := c.batch
	rule = fmt.Sprintf("%s default for %s (%s)", size(c.batch), kind, c.why)
	if knee, why, ok := syncKnee(m); ok {
		batch, rule = int64(knee), why
		if batch < c.batchFloor {
			batch, rule = c.batchFloor, rule+fmt.Sprintf(", raised to the %s floor for %s", size(c.batchFloor), kind)
		}
	}
	if batch > maxBatch {
		batch, rule = maxBatch, rule+", capped at 16MiB"
	}
	if lim := int64(info.RAMBytes / 64); info.RAMBytes > 0 && batch > lim {
		batch, rule = max(floorPow2(lim), 64*kib), rule+", capped at 1/64 of the usable RAM"
	}
	set(KeyMaxBatchBytes, size(batch), "%s", rule)

	// flush.max_delay
	delay := c.delay
	rule = fmt.Sprintf("%s default for %s", duration(c.delay), kind)
	if pt, ok := nearestSync(m, batch); ok {
		delay = 2 * pt.P99.D()
		rule = fmt.Sprintf("2 x the measured p99 write+fdatasync of %s (%s)", size(int64(pt.Bytes)), pt.P99)
		switch {
		case delay < c.delayMin:
			delay, rule = c.delayMin, rule+fmt.Sprintf(", raised to the %s minimum for %s", duration(c.delayMin), kind)
		case delay > c.delayMax:
			delay, rule = c.delayMax, rule+fmt.Sprintf(", capped at the %s maximum for %s", duration(c.delayMax), kind)
		}
	}
	delay = roundDelay(delay)
	set(KeyMaxDelay, duration(delay), "%s", rule)

	// flush.max_inflight and flush.sync_concurrency
	set(KeyMaxInflight, fmt.Sprint(c.inflight), "%d for %s: %s", c.inflight, kind, c.why)
	set(KeySyncConcurrency, fmt.Sprint(c.syncConc), "%d for %s", c.syncConc, kind)

	// log.preallocate_bytes
	pre, rule := c.prealloc, fmt.Sprintf("%s default for %s", size(c.prealloc), kind)
	switch {
	case slices.Contains(cowFS, info.FSType):
		pre, rule = 0, fmt.Sprintf("off: %s is copy-on-write or not a disk filesystem; fallocate gains little", info.FSType)
	case m != nil && !m.PreallocSupported:
		pre, rule = 0, "off: the filesystem refused fallocate"
	case m != nil && m.Growing.Samples > 0 && m.Preallocated.Samples > 0:
		g, q := m.Growing.P99.D(), m.Preallocated.P99.D()
		gain := 0.0
		if g > 0 {
			gain = float64(g-q) / float64(g)
		}
		if gain < preallocGain {
			pre, rule = 0, fmt.Sprintf("off: preallocated appends synced at p99 %s vs %s growing, a %.0f%% gain (< %.0f%%)", m.Preallocated.P99, m.Growing.P99, gain*100, preallocGain*100)
			break
		}
		pre = 32 * mib
		if bw > 0 {
			pre = int64(bw * preallocSeconds)
		}
		pre = floorPow2(min(max(pre, 16*mib), 64*mib))
		rule = fmt.Sprintf("preallocated appends synced at p99 %s vs %s growing (%.0f%% gain); chunk = %.2g s of writes within 16MiB..64MiB", m.Preallocated.P99, m.Growing.P99, gain*100, preallocSeconds)
	}
	if pre > seg {
		pre, rule = seg, rule+", at most one segment"
	}
	set(KeyPreallocateBytes, size(pre), "%s", rule)

	// io.write_buffer_bytes
	wb, rule := c.writeBuf, fmt.Sprintf("%s default for %s", size(c.writeBuf), kind)
	if bw > 0 {
		wb = int64(2 * bw * delay.Seconds())
		rule = fmt.Sprintf("2 x %s/s x max_delay %s", human(bw), duration(delay))
		if wb < minWriteBuf {
			wb, rule = minWriteBuf, rule+", raised to 256KiB"
		}
		if wb > maxWriteBuf {
			wb, rule = maxWriteBuf, rule+", capped at 8MiB"
		}
	}
	if lim := int64(info.RAMBytes / 100); info.RAMBytes > 0 && wb > lim {
		wb, rule = max(lim, 64*kib), rule+", capped at 1% of the usable RAM"
	}
	wb = floorPow2(max(wb, 64*kib))
	set(KeyWriteBuffer, size(wb), "%s", rule)

	// io.read_concurrency
	rc := maxReadConc
	parts := []string{fmt.Sprintf("at most %d", maxReadConc)}
	if n := info.Device.NRRequests; n > 0 && n < rc {
		rc, parts = n, append(parts, fmt.Sprintf("the queue's nr_requests %d", n))
	}
	if cpus := max(info.CPUs, 1); 4*cpus < rc {
		rc, parts = 4*cpus, append(parts, fmt.Sprintf("4 x %d CPUs", cpus))
	}
	if c.readCap < rc {
		rc, parts = c.readCap, append(parts, fmt.Sprintf("%d for %s", c.readCap, kind))
	}
	if m != nil && m.RandRead.IOPS > 0 && m.RandRead.DeepIOPS > 0 && m.RandRead.DeepIOPS < deepGain*m.RandRead.IOPS && rc > 2 {
		rc, parts = 2, append(parts, fmt.Sprintf("2: %d reads in flight gave %.0f/s vs %.0f/s at QD1", m.RandRead.Depth, m.RandRead.DeepIOPS, m.RandRead.IOPS))
	}
	set(KeyReadConcurrency, fmt.Sprint(rc), "the least of: %s", strings.Join(parts, ", "))

	// io.fadvise
	if info.RAMBytes > 0 && info.RAMBytes <= smallRAM {
		set(KeyFadvise, FadviseDropSealed, "usable RAM %s <= 4GiB: sealed segments are dropped from the page cache so the tail stays cached", human(float64(info.RAMBytes)))
	} else if wear {
		set(KeyFadvise, FadviseDropSealed, "%s: keep the cache for the tail that consumers read", kind)
	} else {
		set(KeyFadvise, FadviseKeep, "usable RAM %s > 4GiB: the page cache may keep sealed segments", human(float64(info.RAMBytes)))
	}

	return p
}

// syncKnee returns the smallest measured batch whose write+fdatasync
// throughput reaches kneeShare of the sequential bandwidth, with the rule
// text; false when there is no curve.
func syncKnee(m *Measurements) (int, string, bool) {
	if m == nil || len(m.Sync) == 0 || m.SeqWriteBytesPerSec <= 0 {
		return 0, "", false
	}
	target := kneeShare * m.SeqWriteBytesPerSec
	largest := SyncPoint{}
	for _, pt := range m.Sync {
		if pt.Samples == 0 {
			continue
		}
		if pt.BytesPerSec >= target {
			return pt.Bytes, fmt.Sprintf("knee of the sync curve: %s is the smallest batch whose write+fdatasync reaches %.0f%% of the sequential %s/s (%s/s)", size(int64(pt.Bytes)), kneeShare*100, human(m.SeqWriteBytesPerSec), human(pt.BytesPerSec)), true
		}
		if pt.Bytes > largest.Bytes {
			largest = pt
		}
	}
	if largest.Bytes == 0 {
		return 0, "", false
	}
	// No measured batch reached the target: the curve is still climbing,
	// so go one step past the largest.
	n := 2 * largest.Bytes
	return n, fmt.Sprintf("no measured batch reached %.0f%% of the sequential %s/s (the largest, %s, reached %s/s): twice the largest", kneeShare*100, human(m.SeqWriteBytesPerSec), size(int64(largest.Bytes)), human(largest.BytesPerSec)), true
}

// nearestSync returns the measured sync point closest to (and at most)
// batch bytes, or the smallest point.
func nearestSync(m *Measurements, batch int64) (SyncPoint, bool) {
	if m == nil {
		return SyncPoint{}, false
	}
	var best SyncPoint
	for _, pt := range m.Sync {
		if pt.Samples == 0 {
			continue
		}
		if best.Bytes == 0 || (int64(pt.Bytes) <= batch && pt.Bytes > best.Bytes) {
			best = pt
		}
	}
	return best, best.Bytes > 0
}

// roundDelay rounds a delay to 100 us, or to 1 ms above 10 ms.
func roundDelay(d time.Duration) time.Duration {
	unit := delayStep
	if d > 10*time.Millisecond {
		unit = time.Millisecond
	}
	r := (d + unit/2) / unit * unit
	return max(r, unit)
}

// floorPow2 rounds n down to a power of two (n >= 1).
func floorPow2(n int64) int64 {
	if n < 1 {
		return 0
	}
	return int64(1) << (63 - bits.LeadingZeros64(uint64(n)))
}

// size formats bytes in configuration syntax ("4MiB").
func size(n int64) string { return config.Size(n).String() }

// duration formats a duration in configuration syntax ("2ms").
func duration(d time.Duration) string { return config.Duration(d).String() }

// human formats a byte count or rate for people ("312MiB", "1.5GiB").
func human(bps float64) string {
	switch {
	case bps >= float64(gib):
		return fmt.Sprintf("%.1fGiB", bps/float64(gib))
	case bps >= float64(mib):
		return fmt.Sprintf("%.0fMiB", math.Round(bps/float64(mib)))
	case bps >= float64(kib):
		return fmt.Sprintf("%.0fKiB", bps/float64(kib))
	}
	return fmt.Sprintf("%.0fB", bps)
}
