// Package partlog is a partition's log: an ordered list of segments with a
// log start offset, a log end offset (LEO), a durable end and a high
// watermark (HW).
//
// Appends assign offsets, write to the active segment and, under the group
// flush policy, return once the flush that covers them has synced. Reads
// return whole batches below the HW. The log rolls to a new segment on size,
// age, full index or relative-offset overflow; retention deletes whole
// non-active segments by age and total size; DeleteRecords moves the log
// start forward (never back); TruncateTo cuts the tail for replication.
//
// A failed sync poisons the log: every later append fails until the log is
// reopened and recovered, because after a failed fsync the kernel may have
// dropped the dirty pages and a later fsync could report success over a
// hole (the "fsyncgate" lesson).
//
// Lock order: Log.appendMu, then Log.mu, then a segment's lock.
package partlog

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// Errors callers map to protocol codes.
var (
	// ErrOffsetOutOfRange: the offset is below the log start or above the end.
	ErrOffsetOutOfRange = errors.New("partlog: offset out of range")
	// ErrFailed: an earlier sync or write failed; the log must be reopened.
	ErrFailed = errors.New("partlog: log failed")
	// ErrClosed: the log is closed.
	ErrClosed = errors.New("partlog: log closed")
)

// Config holds a partition's storage settings (Kafka's topic configs).
type Config struct {
	Name               string        // "topic-partition", used in errors
	SegmentBytes       int64         // segment.bytes
	SegmentMs          time.Duration // segment.ms; 0 disables time-based roll
	IndexIntervalBytes int           // index.interval.bytes
	SegmentIndexBytes  int           // segment.index.bytes
	RetentionMs        time.Duration // retention.ms; < 0 keeps forever
	RetentionBytes     int64         // retention.bytes; < 0 means no limit
	PreallocateBytes   int64         // fallocate chunk; 0 disables
	// CanPreallocate, if set, is asked before each preallocation (the
	// node refuses while its disk is nearly full).
	CanPreallocate   func(n int64) bool
	DropCacheOnSeal  bool  // fadvise DONTNEED on sealed segments
	WriteBufferBytes int64 // the cleaner's writes gather up to this; 0 means 1 MiB
	WritebackBytes   int64 // appended bytes that start the device writing (segment.Options); 0 leaves it to the sync
	VerifyReads      bool  // CRC-check every batch served
	MaxUncompressed  int   // decompression bound for record scans

	// Compaction (cleanup.policy with compact).
	Compact                bool          // cleanup.policy includes compact
	MinCleanableDirtyRatio float64       // min.cleanable.dirty.ratio
	MinCompactionLag       time.Duration // min.compaction.lag.ms
	MaxCompactionLag       time.Duration // max.compaction.lag.ms; 0 means none
	DeleteRetention        time.Duration // delete.retention.ms: how long tombstones stay
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig(name string) Config {
	return Config{
		Name:               name,
		SegmentBytes:       1 << 30,
		SegmentMs:          7 * 24 * time.Hour,
		IndexIntervalBytes: 4096,
		SegmentIndexBytes:  10 << 20,
		RetentionMs:        7 * 24 * time.Hour,
		RetentionBytes:     -1,
		VerifyReads:        true,

		MinCleanableDirtyRatio: 0.5,
		DeleteRetention:        24 * time.Hour,
	}
}

func (c *Config) segOpts() segment.Options {
	maxEntries := 0
	if c.SegmentIndexBytes > 0 {
		maxEntries = c.SegmentIndexBytes / 12 // the time index's entries are the larger
	}
	return segment.Options{
		IndexIntervalBytes: c.IndexIntervalBytes,
		MaxIndexEntries:    maxEntries,
		PreallocateBytes:   c.PreallocateBytes,
		CanPreallocate:     c.CanPreallocate,
		DropCacheOnSeal:    c.DropCacheOnSeal,
		WritebackBytes:     c.WritebackBytes,
		VerifyReads:        c.VerifyReads,
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.SegmentBytes < 14+61 || c.SegmentBytes > segment.MaxSegmentBytes {
		errs = append(errs, fmt.Errorf("segment.bytes: %d is outside [75, %d]", c.SegmentBytes, segment.MaxSegmentBytes))
	}
	if c.SegmentMs < 0 {
		errs = append(errs, fmt.Errorf("segment.ms: %v is negative", c.SegmentMs))
	}
	if c.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Errorf("index.interval.bytes: %d is negative", c.IndexIntervalBytes))
	}
	if c.SegmentIndexBytes != 0 && c.SegmentIndexBytes < 12 {
		errs = append(errs, fmt.Errorf("segment.index.bytes: %d holds no entry", c.SegmentIndexBytes))
	}
	if c.PreallocateBytes < 0 {
		errs = append(errs, fmt.Errorf("preallocate bytes: %d is negative", c.PreallocateBytes))
	}
	if c.WritebackBytes < 0 {
		errs = append(errs, fmt.Errorf("writeback bytes: %d is negative", c.WritebackBytes))
	}
	return errors.Join(errs...)
}

// Log is one partition's log.
type Log struct {
	fsys      vfs.FS
	dir       string
	committer *flush.Committer
	now       func() time.Time
	cfg       atomic.Pointer[Config]

	appendMu      sync.Mutex // serialises appends, rolls, truncation, deletion, close
	hooks         atomic.Pointer[Hooks]
	activeCreated atomic.Int64 // when the active segment was created or opened, Unix ms

	mu struct {
		sync.RWMutex
		segs          []*segment.Segment
		logStart      int64
		leo           int64 // next offset to assign
		durable       int64 // everything below is synced
		hw            int64
		recoveryPoint int64
		cleanerOffset int64 // compaction has covered everything below
		failed        error
		closed        bool
		cleaner       CleanerState
		hwCh          chan struct{} // closed and replaced when the HW moves
		done          chan struct{} // closed by Close
		externalHW    bool          // the HW is set by replication, not by flushes
	}
}

// Hooks let the owner of a log follow it. They run synchronously and must
// be quick.
type Hooks struct {
	// OnRoll runs after a roll, with the append lock held, so nothing has
	// been appended to the new segment yet: state kept beside the log (such
	// as producer state) is exactly as of nextBase.
	OnRoll func(nextBase int64)
	// OnHighWatermark runs after the HW moves, with the log's lock held.
	OnHighWatermark func(hw int64)
	// LastBatch returns the last offset of a producer's last batch, which
	// compaction must keep (idempotence survives only with it).
	LastBatch func(producerID int64) (lastOffset int64, ok bool)
}

// SetHooks installs hooks (replacing any earlier ones).
func (l *Log) SetHooks(h Hooks) { l.hooks.Store(&h) }

// Options are the collaborators of a Log.
type Options struct {
	Committer *flush.Committer // group commit; nil means a private os-mode one
	Now       func() time.Time // the clock; nil means time.Now
	Clean     bool             // the last shutdown was clean: skip the scan
}

// RecoveryReport says what opening the log found.
type RecoveryReport struct {
	Segments          int
	RecoveredSegments int
	TruncatedBytes    int64
	DeletedSegments   int
	Reasons           []string
}

// Open opens (creating if needed) the partition log in dir.
func Open(fsys vfs.FS, dir string, cfg Config, opts Options) (*Log, RecoveryReport, error) {
	var rep RecoveryReport
	if err := cfg.Validate(); err != nil {
		return nil, rep, fmt.Errorf("open partition %s: %w", cfg.Name, err)
	}
	l := &Log{fsys: fsys, dir: dir, committer: opts.Committer, now: opts.Now}
	if l.committer == nil {
		l.committer = flush.New(flush.Config{Mode: flush.OS})
	}
	if l.now == nil {
		l.now = time.Now
	}
	c := cfg
	l.cfg.Store(&c)
	l.activeCreated.Store(l.now().UnixMilli())
	l.mu.hwCh = make(chan struct{})
	l.mu.done = make(chan struct{})
	if err := vfs.MkdirAllDurable(fsys, dir); err != nil {
		return nil, rep, l.errf("open", err)
	}
	if err := l.load(opts.Clean, &rep); err != nil {
		for _, s := range l.mu.segs {
			s.Close()
		}
		return nil, rep, l.errf("open", err)
	}
	return l, rep, nil
}

func (l *Log) errf(op string, err error) error {
	return fmt.Errorf("%s partition %s: %w", op, l.cfg.Load().Name, err)
}

// Done returns a channel closed when the log closes.
func (l *Log) Done() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.mu.done
}

// Name returns the partition's name.
func (l *Log) Name() string { return l.cfg.Load().Name }

// Dir returns the partition's directory.
func (l *Log) Dir() string { return l.dir }

// Config returns the current settings.
func (l *Log) Config() Config { return *l.cfg.Load() }

// SetConfig changes the settings; they apply to the next append or
// retention pass. The name cannot change.
func (l *Log) SetConfig(cfg Config) error {
	cfg.Name = l.Name()
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.cfg.Store(&cfg)
	return nil
}

// load lists the directory, finishes or discards interrupted file
// operations, opens the segments and recovers them when needed.
func (l *Log) load(clean bool, rep *RecoveryReport) error {
	names, err := l.fsys.List(l.dir)
	if err != nil {
		return err
	}
	if err := l.finishCleaning(); err != nil {
		return err
	}
	if err := l.finishSwaps(names); err != nil {
		return err
	}
	if names, err = l.fsys.List(l.dir); err != nil {
		return err
	}
	logs := map[int64]bool{}
	var others []string
	changed := false
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".tmp"), strings.HasSuffix(n, CleanedSuffix), strings.HasSuffix(n, ".deleted"):
			if err := l.fsys.Remove(filepath.Join(l.dir, n)); err != nil {
				return err
			}
			changed = true
		case strings.HasSuffix(n, segment.LogSuffix):
			base, ok := parseBase(n, segment.LogSuffix)
			if !ok {
				return fmt.Errorf("unexpected file %s", n)
			}
			logs[base] = true
		default:
			others = append(others, n)
		}
	}
	for _, n := range others {
		for _, suf := range []string{segment.IndexSuffix, segment.TimeIndexSuffix} {
			if base, ok := parseBase(n, suf); ok && !logs[base] {
				if err := l.fsys.Remove(filepath.Join(l.dir, n)); err != nil {
					return err
				}
				changed = true
			}
		}
	}
	if changed {
		if err := l.fsys.SyncDir(l.dir); err != nil {
			return err
		}
	}
	cp, haveCP, err := readCheckpoint(l.fsys, l.dir)
	if err != nil {
		return err
	}
	bases := make([]int64, 0, len(logs))
	for b := range logs {
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	cfg := l.cfg.Load()
	for _, b := range bases {
		s, err := segment.Open(l.fsys, l.dir, b, cfg.segOpts())
		if err != nil {
			return err
		}
		l.mu.segs = append(l.mu.segs, s)
	}
	rep.Segments = len(l.mu.segs)
	if len(l.mu.segs) == 0 {
		s, err := segment.Create(l.fsys, l.dir, cp.logStart, cfg.segOpts())
		if err != nil {
			return err
		}
		l.mu.segs = []*segment.Segment{s}
		if err := l.fsys.SyncDir(l.dir); err != nil {
			return err
		}
	} else if clean && haveCP {
		if err := l.openCleanTail(rep); err != nil {
			return err
		}
	} else {
		if err := l.recover(cp.recoveryPoint, rep); err != nil {
			return err
		}
	}
	last := l.active()
	leo, err := last.NextOffset()
	if err != nil {
		return err
	}
	l.mu.leo, l.mu.durable, l.mu.hw = leo, leo, leo
	l.mu.logStart = max(cp.logStart, l.mu.segs[0].Base())
	if l.mu.logStart > leo {
		// Everything the log start promised is gone (a lost tail):
		// start empty at the log start rather than move it backwards.
		if err := l.resetToLocked(l.mu.logStart); err != nil {
			return err
		}
	}
	l.mu.recoveryPoint = l.active().Base()
	l.mu.cleanerOffset = min(max(cp.cleanerOffset, l.mu.logStart), l.mu.leo)
	return writeCheckpoint(l.fsys, l.dir, l.cpLocked())
}

// cpLocked is the checkpoint of the log's current state (l.mu held).
func (l *Log) cpLocked() checkpoint {
	return checkpoint{logStart: l.mu.logStart, recoveryPoint: l.mu.recoveryPoint, cleanerOffset: l.mu.cleanerOffset}
}

// openCleanTail makes the last segment appendable after a clean shutdown;
// if its indexes or tail turn out damaged it is recovered instead.
func (l *Log) openCleanTail(rep *RecoveryReport) error {
	last := l.active()
	err := last.Unseal()
	if err == nil {
		return nil
	}
	if !errors.Is(err, segment.ErrCorrupt) {
		return err
	}
	rep.Reasons = append(rep.Reasons, err.Error())
	return l.recover(last.Base(), rep)
}

// recover scans every segment from the one holding the recovery point,
// truncating at the first bad batch and deleting every later segment.
func (l *Log) recover(recoveryPoint int64, rep *RecoveryReport) error {
	segs := l.mu.segs
	start := sort.Search(len(segs), func(i int) bool { return segs[i].Base() > recoveryPoint })
	start = max(start-1, 0)
	prevNext := int64(-1)
	if start > 0 {
		n, err := segs[start-1].NextOffset()
		if err != nil {
			return err
		}
		prevNext = n
	}
	for i := start; i < len(segs); i++ {
		s := segs[i]
		if s.Base() < prevNext {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("segment %d starts below the previous segment's end %d", s.Base(), prevNext))
			return l.dropFrom(i, rep)
		}
		res, err := s.Recover()
		if err != nil {
			return err
		}
		rep.RecoveredSegments++
		rep.TruncatedBytes += res.Truncated
		if res.Reason != "" {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("segment %d: %s", s.Base(), res.Reason))
		}
		if err := s.Sync(); err != nil { // data read back from the page cache must be on disk before it counts
			return err
		}
		if i < len(segs)-1 {
			if err := s.WriteIndexes(); err != nil {
				return err
			}
		}
		if prevNext, err = s.NextOffset(); err != nil {
			return err
		}
		if res.Truncated > 0 && i < len(segs)-1 {
			// Damage in the middle: nothing after it can be trusted.
			if err := l.dropFrom(i+1, rep); err != nil {
				return err
			}
			break
		}
	}
	return l.active().Unseal()
}

// dropFrom deletes segments[i:].
func (l *Log) dropFrom(i int, rep *RecoveryReport) error {
	for _, s := range l.mu.segs[i:] {
		if err := s.Delete(); err != nil {
			return err
		}
		rep.DeletedSegments++
	}
	l.mu.segs = l.mu.segs[:i]
	if err := l.fsys.SyncDir(l.dir); err != nil {
		return err
	}
	if len(l.mu.segs) == 0 {
		return nil
	}
	return l.active().Unseal()
}

// resetToLocked deletes every segment and starts an empty one at offset.
func (l *Log) resetToLocked(offset int64) error {
	for _, s := range l.mu.segs {
		if err := s.Delete(); err != nil {
			return err
		}
	}
	s, err := segment.Create(l.fsys, l.dir, offset, l.cfg.Load().segOpts())
	if err != nil {
		return err
	}
	l.mu.segs = []*segment.Segment{s}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		return err
	}
	l.mu.leo, l.mu.durable, l.mu.hw = offset, offset, offset
	l.mu.logStart = offset
	l.mu.cleanerOffset = offset
	return nil
}

func (l *Log) active() *segment.Segment { return l.mu.segs[len(l.mu.segs)-1] }

func parseBase(name, suffix string) (int64, bool) {
	if !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	s := strings.TrimSuffix(name, suffix)
	if len(s) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// Close syncs the log, writes the active segment's indexes and the
// checkpoint, and closes the files. A closed log refuses everything.
func (l *Log) Close() error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.closed = true
	failed := l.mu.failed
	segs := l.mu.segs
	cp := l.cpLocked()
	cp.recoveryPoint = l.active().Base()
	close(l.mu.hwCh)
	l.mu.hwCh = make(chan struct{})
	close(l.mu.done)
	l.mu.Unlock()
	var errs []error
	if failed == nil {
		last := segs[len(segs)-1]
		if err := last.Sync(); err != nil {
			errs = append(errs, err)
		} else if err := last.WriteIndexes(); err != nil {
			errs = append(errs, err)
		} else if err := writeCheckpoint(l.fsys, l.dir, cp); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range segs {
		s.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return l.errf("close", err)
	}
	if failed != nil {
		return l.errf("close", fmt.Errorf("%w: %w", ErrFailed, failed))
	}
	return nil
}

// Abandon drops the log as a crash would: files are closed with nothing
// synced or written (no indexes, no checkpoint). Only tests use it.
func (l *Log) Abandon() {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return
	}
	l.mu.closed = true
	close(l.mu.hwCh)
	l.mu.hwCh = make(chan struct{})
	close(l.mu.done)
	for _, s := range l.mu.segs {
		s.Close()
	}
}

// Delete closes the log and removes its directory (the topic is deleted).
func (l *Log) Delete() error {
	_ = l.Close() // the data is going away; a close error changes nothing
	if err := l.fsys.RemoveAll(l.dir); err != nil {
		return l.errf("delete", err)
	}
	return l.fsys.SyncDir(filepath.Dir(l.dir))
}
