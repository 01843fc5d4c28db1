// Package segment is one segment of a partition log: a .log file of
// RecordBatch v2 bytes, a sparse .index and a .timeindex, named by the
// segment's base offset in 20 digits, as Kafka lays them out.
//
// The log file holds whole batches back to back. The offset index maps the
// last offset of some batches (relative to the base, int32) to the position
// where the batch starts (int32); an entry is added once more than
// IndexIntervalBytes have been appended since the previous one. The time
// index records (largest timestamp so far, relative offset) beside offset
// entries, when the largest timestamp grew.
//
// The active segment keeps its indexes in memory; they are written to disk
// when the segment is sealed (rolled) or the log closes cleanly. After an
// unclean stop, Recover rebuilds them by scanning the log and truncates it
// at the first short, torn, bad-CRC or non-monotonic batch. Indexes of
// sealed segments are loaded on first use, checked, and rebuilt from the log
// when missing or damaged.
package segment

import (
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// File name suffixes.
const (
	LogSuffix       = ".log"
	IndexSuffix     = ".index"
	TimeIndexSuffix = ".timeindex"
)

// maxRel is the largest relative offset an index can hold.
const maxRel = math.MaxInt32

// MaxSegmentBytes is the largest segment: positions are int32.
const MaxSegmentBytes = math.MaxInt32

// Errors of a segment.
var (
	// ErrCorrupt marks damage found in a stored segment.
	ErrCorrupt = errors.New("segment: corrupt data")
	// ErrSync marks a failed fdatasync: what was written may be lost.
	ErrSync = errors.New("segment: sync failed")
	// ErrTorn marks a failed write whose partial bytes could not be cut
	// back: the file holds bytes the segment does not account for.
	ErrTorn = errors.New("segment: torn write")
)

// Options tune a segment.
type Options struct {
	// IndexIntervalBytes is the log bytes between offset index entries.
	IndexIntervalBytes int
	// MaxIndexEntries caps the offset and time index entries; the log rolls
	// when either is full (Kafka's segment.index.bytes / entry size).
	MaxIndexEntries int
	// PreallocateBytes reserves log blocks ahead of appends in chunks of
	// this size (fallocate with KEEP_SIZE), from a quarter chunk of data
	// on; 0 turns it off.
	PreallocateBytes int64
	// CanPreallocate, if set, is asked before each preallocation of n
	// bytes; false skips it (the disk is nearly full). Preallocation is a
	// hint: when refused or when it fails, appends go on without it.
	CanPreallocate func(n int64) bool
	// DropCacheOnSeal advises the kernel to drop a sealed segment's pages.
	DropCacheOnSeal bool
	// WritebackBytes is how many appended bytes StartWriteback lets
	// gather before it starts the device writing them; 0 leaves it all
	// to the sync.
	WritebackBytes int64
	// VerifyReads checks the CRC of every batch a read returns.
	VerifyReads bool
}

// Name returns the file name of a segment file: the base offset in 20
// digits plus suffix.
func Name(base int64, suffix string) string { return fmt.Sprintf("%020d%s", base, suffix) }

// Segment is one segment. Appends come from one goroutine at a time (the
// partition log serialises them); reads may run concurrently with appends.
type Segment struct {
	fsys vfs.FS
	dir  string
	base int64
	opts Options
	log  vfs.File
	temp string // suffix of every file name while the segment is being written elsewhere (".cleaned")

	preallocOff atomic.Bool // preallocation failed once: not tried again

	// Owned by the appending goroutine (which also truncates): where the
	// next writeback starts, and whether writeback failed once (a hint:
	// not tried again).
	writebackFrom int64
	writebackOff  bool

	mu struct {
		sync.RWMutex
		size            int64 // bytes of whole batches
		next            int64 // next offset: last offset + 1
		maxTS           int64
		maxTSOffset     int64
		firstTS         int64 // max timestamp of the first batch, -1 if empty
		index           []offsetEntry
		times           []timeEntry
		loaded          bool // indexes and tail fields are in memory
		bytesSinceIndex int
		preallocEnd     int64
		sealed          bool
		refs            int
		deleted         bool
	}
}

func (s *Segment) path(suffix string) string {
	return filepath.Join(s.dir, Name(s.base, suffix)+s.temp)
}

// CreateTemp creates a segment whose files carry an extra suffix (such as
// ".cleaned") until the caller renames them into place with Promote.
func CreateTemp(fsys vfs.FS, dir string, base int64, opts Options, temp string) (*Segment, error) {
	s := &Segment{fsys: fsys, dir: dir, base: base, opts: opts, temp: temp}
	f, err := fsys.Create(s.path(LogSuffix))
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", Name(base, temp), err)
	}
	s.log = f
	s.mu.next = base
	s.mu.maxTS, s.mu.maxTSOffset, s.mu.firstTS = -1, -1, -1
	s.mu.loaded = true
	s.mu.refs = 1
	return s, nil
}

// Suffixes are the file suffixes of a segment.
var Suffixes = []string{LogSuffix, IndexSuffix, TimeIndexSuffix}

// EachBatch calls fn with every batch of the segment, in order, each
// checked (length, magic, CRC). The batch is valid only during the call.
func (s *Segment) EachBatch(fn func(b record.Batch) error) error {
	size := s.Size()
	var cbErr error
	_, reason, err := s.walk(0, size, s.base-1, func(b record.Batch, _, _ int64) {
		if cbErr == nil {
			cbErr = fn(b)
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("read segment %s: %w", Name(s.base, ""), err)
	case cbErr != nil:
		return cbErr
	case reason != "":
		return fmt.Errorf("read segment %s: %w: %s", Name(s.base, ""), ErrCorrupt, reason)
	}
	return nil
}

// Create creates an empty segment at base; it becomes the active segment.
// The caller syncs the directory.
func Create(fsys vfs.FS, dir string, base int64, opts Options) (*Segment, error) {
	s := &Segment{fsys: fsys, dir: dir, base: base, opts: opts}
	f, err := fsys.Create(s.path(LogSuffix))
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", Name(base, ""), err)
	}
	// Stale indexes from an earlier segment at this base must not survive.
	for _, suf := range []string{IndexSuffix, TimeIndexSuffix} {
		if err := fsys.Remove(s.path(suf)); err != nil && !vfs.IsNotExist(err) {
			f.Close()
			return nil, fmt.Errorf("create segment %s: %w", Name(base, ""), err)
		}
	}
	s.log = f
	s.mu.next = base
	s.mu.maxTS, s.mu.maxTSOffset, s.mu.firstTS = -1, -1, -1
	s.mu.loaded = true
	s.mu.refs = 1
	return s, nil
}

// Open opens an existing segment. Its indexes are loaded on first use;
// call Recover to scan and repair it, or LoadTail to make it appendable.
func Open(fsys vfs.FS, dir string, base int64, opts Options) (*Segment, error) {
	s := &Segment{fsys: fsys, dir: dir, base: base, opts: opts}
	f, err := fsys.OpenRW(s.path(LogSuffix))
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w", Name(base, ""), err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open segment %s: %w", Name(base, ""), err)
	}
	if size > MaxSegmentBytes {
		f.Close()
		return nil, fmt.Errorf("open segment %s: %w: %d bytes exceeds the int32 position range", Name(base, ""), ErrCorrupt, size)
	}
	s.log = f
	s.writebackFrom = size &^ (pageSize - 1)
	s.mu.size = size
	s.mu.next = base
	s.mu.maxTS, s.mu.maxTSOffset, s.mu.firstTS = -1, -1, -1
	s.mu.sealed = true
	s.mu.refs = 1
	return s, nil
}

// Base returns the segment's base offset.
func (s *Segment) Base() int64 { return s.base }

// Size returns the bytes of whole batches in the log file.
func (s *Segment) Size() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.size
}

// NextOffset returns the offset after the segment's last batch (the base
// when empty). It loads the segment's tail if needed.
func (s *Segment) NextOffset() (int64, error) {
	if err := s.ensureLoaded(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.next, nil
}

// MaxTimestamp returns the largest batch timestamp in the segment and the
// last offset of the batch that holds it; -1, -1 when empty.
func (s *Segment) MaxTimestamp() (ts, offset int64, err error) {
	if err := s.ensureLoaded(); err != nil {
		return 0, 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.maxTS, s.mu.maxTSOffset, nil
}

// FirstTimestamp returns the max timestamp of the first batch (the time a
// segment's age counts from), or -1 when empty.
func (s *Segment) FirstTimestamp() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.firstTS
}

// Ref takes a reference that keeps the files open; it fails once the
// segment is deleted.
func (s *Segment) Ref() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.deleted {
		return false
	}
	s.mu.refs++
	return true
}

// Unref drops a reference taken by Ref.
func (s *Segment) Unref() {
	s.mu.Lock()
	s.mu.refs--
	last := s.mu.refs == 0
	s.mu.Unlock()
	if last {
		s.log.Close()
	}
}

func (s *Segment) indexFullLocked() bool {
	max := s.opts.MaxIndexEntries
	return max > 0 && (len(s.mu.index) >= max || len(s.mu.times) >= max)
}

// RollReason says why a batch needs a new segment, or "" when it fits.
// maxBytes is segment.bytes; the age check is left to the caller.
func (s *Segment) RollReason(batchSize int, lastOffset int64, maxBytes int64) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.mu.size > 0 && s.mu.size+int64(batchSize) > maxBytes:
		return "size"
	case s.mu.size+int64(batchSize) > MaxSegmentBytes:
		return "size"
	case s.indexFullLocked():
		return "index full"
	case lastOffset-s.base > maxRel:
		return "offset overflow"
	}
	return ""
}

// BatchInfo describes a batch being appended.
type BatchInfo struct {
	Base, Last   int64
	MaxTimestamp int64
}

// Append writes whole batches (already stamped with their offsets) at the
// end of the log and indexes them. infos describes each batch in order.
// On a failed or short write the file is cut back to its previous size and
// the error returned; the segment is then unchanged.
func (s *Segment) Append(buf []byte, infos []BatchInfo) error {
	s.mu.RLock()
	pos, sealed := s.mu.size, s.mu.sealed
	preEnd := s.mu.preallocEnd
	s.mu.RUnlock()
	if sealed {
		return fmt.Errorf("append to segment %s: sealed", Name(s.base, ""))
	}
	// A segment starts preallocating once it has taken a quarter chunk:
	// busy partitions get contiguous space, while the many quiet ones of
	// a wide topic reserve nothing.
	if s.opts.PreallocateBytes > 0 && pos+int64(len(buf)) > preEnd && pos >= s.opts.PreallocateBytes/4 && !s.preallocOff.Load() {
		chunk := s.opts.PreallocateBytes
		newEnd := preEnd + chunk*((pos+int64(len(buf))-preEnd)/chunk+1)
		switch {
		case s.opts.CanPreallocate != nil && !s.opts.CanPreallocate(newEnd-preEnd):
			// Too little space to reserve ahead: write without.
		case vfs.Preallocate(s.log, preEnd, newEnd-preEnd) != nil:
			// A hint only (ENOSPC, or a filesystem without fallocate):
			// this segment goes on without it.
			s.preallocOff.Store(true)
		default:
			preEnd = newEnd
		}
	}
	n, err := s.log.Write(buf)
	if err != nil || n != len(buf) {
		if err == nil {
			err = io.ErrShortWrite
		}
		if n > 0 {
			if terr := s.log.Truncate(pos); terr != nil {
				err = fmt.Errorf("%w: %w (cutting back: %w)", ErrTorn, err, terr)
			}
		}
		return fmt.Errorf("append to segment %s: %w", Name(s.base, ""), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.preallocEnd = preEnd
	for _, info := range infos {
		size := int64(record.Batch(buf).Size())
		s.indexBatchLocked(pos, size, info)
		pos += size
		buf = buf[size:]
	}
	s.mu.size = pos
	return nil
}

// pageSize is the unit of the page cache: writeback marks stay on a page
// boundary, so the page an append ends in is written again with the rest
// when the next appends fill it.
const pageSize = 4096

// StartWriteback follows an append: once WritebackBytes have been
// appended since the last writeback, it starts the device writing them,
// up to the end of the data (sync_file_range), without waiting. The flush
// that makes them durable then finds them written or on the way instead
// of starting them all itself, after the committer has got round to it.
// It is a hint: a file or filesystem without it, or a failure, turns it
// off for the segment, and the sync that follows reports any error that
// matters. The caller is the one appending.
func (s *Segment) StartWriteback() {
	if s.opts.WritebackBytes <= 0 || s.writebackOff {
		return
	}
	s.mu.RLock()
	end := s.mu.size
	s.mu.RUnlock()
	if end-s.writebackFrom < s.opts.WritebackBytes {
		return
	}
	if err := vfs.StartWriteback(s.log, s.writebackFrom, end-s.writebackFrom); err != nil {
		s.writebackOff = true
		return
	}
	s.writebackFrom = end &^ (pageSize - 1)
}

// indexBatchLocked updates the tail fields and indexes for a batch of size
// bytes at pos.
func (s *Segment) indexBatchLocked(pos, size int64, info BatchInfo) {
	if s.mu.firstTS < 0 && s.mu.size == 0 && pos == 0 {
		s.mu.firstTS = info.MaxTimestamp
	}
	if info.MaxTimestamp > s.mu.maxTS {
		s.mu.maxTS, s.mu.maxTSOffset = info.MaxTimestamp, info.Last
	}
	if s.mu.bytesSinceIndex > s.opts.IndexIntervalBytes || pos == 0 {
		rel := uint32(info.Last - s.base)
		if n := len(s.mu.index); n == 0 || s.mu.index[n-1].rel < rel {
			s.mu.index = append(s.mu.index, offsetEntry{rel: rel, pos: uint32(pos)})
		}
		if n := len(s.mu.times); s.mu.maxTS >= 0 && (n == 0 || s.mu.times[n-1].ts < s.mu.maxTS) {
			s.mu.times = append(s.mu.times, timeEntry{ts: s.mu.maxTS, rel: uint32(s.mu.maxTSOffset - s.base)})
		}
		s.mu.bytesSinceIndex = 0
	}
	s.mu.bytesSinceIndex += int(size)
	s.mu.next = info.Last + 1
}

// Sync makes the log's appended bytes durable.
func (s *Segment) Sync() error {
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("sync segment %s: %w: %w", Name(s.base, ""), ErrSync, err)
	}
	return nil
}

// FSSync returns the ID of the filesystem holding the segment's log and a
// sync of that whole filesystem, which makes the log durable as Sync does
// (and every other file there with it); ok is false when the log's file
// cannot take part in one.
func (s *Segment) FSSync() (id uint64, sync func() error, ok bool) {
	fsy, ok := s.log.(vfs.FSSyncer)
	if !ok {
		return 0, nil, false
	}
	id, err := fsy.FSID()
	if err != nil {
		return 0, nil, false
	}
	return id, func() error {
		if err := fsy.SyncFS(); err != nil {
			return fmt.Errorf("sync the filesystem of segment %s: %w: %w", Name(s.base, ""), ErrSync, err)
		}
		return nil
	}, true
}

// Seal finishes the segment when the log rolls: the final time index entry
// is added, the indexes are written, preallocated space beyond the data is
// released, and log and indexes are synced. The caller syncs the directory.
func (s *Segment) Seal() error {
	s.mu.Lock()
	if n := len(s.mu.times); s.mu.maxTS >= 0 && (n == 0 || s.mu.times[n-1].ts < s.mu.maxTS) {
		s.mu.times = append(s.mu.times, timeEntry{ts: s.mu.maxTS, rel: uint32(s.mu.maxTSOffset - s.base)})
	}
	s.mu.sealed = true
	size, prealloc := s.mu.size, s.mu.preallocEnd > s.mu.size
	s.mu.Unlock()
	if prealloc {
		if err := s.log.Truncate(size); err != nil {
			return fmt.Errorf("seal segment %s: %w", Name(s.base, ""), err)
		}
	}
	if err := s.Sync(); err != nil {
		return err
	}
	if err := s.WriteIndexes(); err != nil {
		return err
	}
	if s.opts.DropCacheOnSeal {
		_ = vfs.Fadvise(s.log, 0, 0, vfs.AdviceDontNeed) // a hint; failure changes nothing
	}
	return nil
}

// WriteIndexes writes both index files from memory and syncs them.
func (s *Segment) WriteIndexes() error {
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	s.mu.RLock()
	ib, tb := encodeOffsetIndex(s.mu.index), encodeTimeIndex(s.mu.times)
	s.mu.RUnlock()
	for _, w := range []struct {
		suffix string
		data   []byte
	}{{IndexSuffix, ib}, {TimeIndexSuffix, tb}} {
		f, err := s.fsys.Create(s.path(w.suffix))
		if err == nil {
			_, err = f.Write(w.data)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", Name(s.base, w.suffix), err)
		}
	}
	return nil
}

// Unseal makes a sealed segment appendable again (after truncation made it
// the last one). Its index files are stale until rewritten.
func (s *Segment) Unseal() error {
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.sealed = false
	s.mu.preallocEnd = s.mu.size
	return nil
}

// Delete removes the segment's files. Readers holding a reference keep
// reading the open file until they drop it. The caller syncs the directory.
func (s *Segment) Delete() error {
	s.mu.Lock()
	if s.mu.deleted {
		s.mu.Unlock()
		return nil
	}
	s.mu.deleted = true
	s.mu.Unlock()
	var errs []error
	for _, suf := range []string{LogSuffix, IndexSuffix, TimeIndexSuffix} {
		if err := s.fsys.Remove(s.path(suf)); err != nil && !vfs.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	s.Unref()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete segment %s: %w", Name(s.base, ""), err)
	}
	return nil
}

// Close drops the owner's reference.
func (s *Segment) Close() error {
	s.Unref()
	return nil
}
