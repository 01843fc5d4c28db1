package segment

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// scanner walks the batches of a log file from a position, reading in
// chunks. In header mode only the 61-byte header of each batch is needed;
// in full mode the whole batch is read.
type scanner struct {
	s     *Segment
	end   int64 // file size
	pos   int64 // position of the current batch
	buf   []byte
	bufAt int64 // file position of buf[0]
	full  bool
	chunk int
	err   error
}

// Read sizes: recovery and index rebuilds read big chunks of whole batches;
// lookups only need a few headers near an index entry.
const (
	fullChunk   = 64 << 10
	headerChunk = 4 << 10
)

var headerBufs = sync.Pool{New: func() any { b := make([]byte, headerChunk); return &b }}

func (s *Segment) newScanner(from, end int64, full bool) *scanner {
	sc := &scanner{s: s, end: end, pos: from, full: full, chunk: fullChunk}
	if !full {
		sc.chunk = headerChunk
		sc.buf = (*headerBufs.Get().(*[]byte))[:0]
	}
	return sc
}

// release returns a header scanner's buffer to the pool; the scanner and
// any header it returned must not be used afterwards.
func (sc *scanner) release() {
	if !sc.full && cap(sc.buf) == headerChunk {
		b := sc.buf[:headerChunk]
		headerBufs.Put(&b)
	}
	sc.buf = nil
}

// fill makes buf cover [pos, pos+need).
func (sc *scanner) fill(need int) bool {
	if sc.pos >= sc.bufAt && sc.pos+int64(need) <= sc.bufAt+int64(len(sc.buf)) {
		return true
	}
	n := max(need, sc.chunk)
	n = int(min(int64(n), sc.end-sc.pos))
	if n < need {
		return false
	}
	if cap(sc.buf) < n {
		sc.buf = make([]byte, n)
	}
	sc.buf = sc.buf[:n]
	if _, err := sc.s.log.ReadAt(sc.buf, sc.pos); err != nil && !(errors.Is(err, io.EOF)) {
		sc.err = fmt.Errorf("read segment %s at %d: %w", Name(sc.s.base, ""), sc.pos, err)
		return false
	}
	sc.bufAt = sc.pos
	return true
}

// batchErr describes why the batch at the current position is unusable.
type batchErr struct {
	pos    int64
	reason string
}

func (e *batchErr) Error() string { return fmt.Sprintf("position %d: %s", e.pos, e.reason) }

// next returns the batch (or, in header mode, its header) at the current
// position and its total size, then advances. It returns io.EOF at a clean
// end, a *batchErr at a short or malformed batch, or an I/O error.
func (sc *scanner) next() (record.Batch, int64, error) {
	if sc.err != nil {
		return nil, 0, sc.err
	}
	if sc.pos == sc.end {
		return nil, 0, io.EOF
	}
	if !sc.fill(record.HeaderSize) {
		if sc.err != nil {
			return nil, 0, sc.err
		}
		return nil, 0, &batchErr{sc.pos, fmt.Sprintf("%d bytes left, shorter than a batch header", sc.end-sc.pos)}
	}
	h := sc.buf[sc.pos-sc.bufAt:]
	size, _ := record.PeekSize(h)
	if size < record.HeaderSize {
		return nil, 0, &batchErr{sc.pos, fmt.Sprintf("batch length %d below the header size", size-record.LengthFieldEnd)}
	}
	if sc.pos+int64(size) > sc.end {
		return nil, 0, &batchErr{sc.pos, fmt.Sprintf("batch of %d bytes runs past the end of the log", size)}
	}
	var b record.Batch
	if sc.full {
		if !sc.fill(size) {
			if sc.err != nil {
				return nil, 0, sc.err
			}
			return nil, 0, &batchErr{sc.pos, "batch runs past the end of the log"}
		}
		b = record.Batch(sc.buf[sc.pos-sc.bufAt : sc.pos-sc.bufAt+int64(size)])
	} else {
		b = record.Batch(h[:record.HeaderSize])
	}
	sc.pos += int64(size)
	return b, int64(size), nil
}

// RecoverResult reports what Recover found.
type RecoverResult struct {
	Batches   int
	Valid     int64  // bytes kept
	Truncated int64  // bytes cut from the tail
	Reason    string // why the tail was cut, if it was
}

// Recover scans the whole log, checking every batch (length, magic, CRC,
// offsets increasing and inside the segment's range), truncates the log at
// the first bad batch, syncs it, and rebuilds the indexes in memory.
func (s *Segment) Recover() (RecoverResult, error) {
	size, err := s.log.Size()
	if err != nil {
		return RecoverResult{}, fmt.Errorf("recover segment %s: %w", Name(s.base, ""), err)
	}
	s.mu.Lock()
	s.resetLocked()
	s.mu.Unlock()

	var res RecoverResult
	valid, reason, err := s.walk(0, size, s.base-1, func(b record.Batch, pos, n int64) {
		s.mu.Lock()
		s.indexBatchLocked(pos, n, BatchInfo{Base: b.BaseOffset(), Last: b.LastOffset(), MaxTimestamp: b.MaxTimestamp()})
		s.mu.size = pos + n
		s.mu.Unlock()
		res.Batches++
	})
	if err != nil {
		return res, fmt.Errorf("recover segment %s: %w", Name(s.base, ""), err)
	}
	res.Valid, res.Reason = valid, reason
	if res.Valid < size {
		res.Truncated = size - res.Valid
		if err := s.log.Truncate(res.Valid); err != nil {
			return res, fmt.Errorf("recover segment %s: truncate at %d: %w", Name(s.base, ""), res.Valid, err)
		}
		if err := s.Sync(); err != nil {
			return res, fmt.Errorf("recover segment %s: %w", Name(s.base, ""), err)
		}
	}
	s.mu.Lock()
	s.mu.size = res.Valid
	s.mu.loaded = true
	s.mu.Unlock()
	return res, nil
}

// checkStored validates a stored batch: intact and in offset order.
func (s *Segment) checkStored(b record.Batch, prevLast int64) string {
	if _, err := record.Check(b); err != nil {
		return err.Error()
	}
	base, delta := b.BaseOffset(), b.LastOffsetDelta()
	switch {
	case delta < 0:
		return fmt.Sprintf("negative lastOffsetDelta %d", delta)
	case base <= prevLast:
		return fmt.Sprintf("base offset %d does not follow the previous last offset %d", base, prevLast)
	case b.LastOffset()-s.base > maxRel:
		return fmt.Sprintf("offset %d out of the segment's range", b.LastOffset())
	}
	return ""
}

// walk checks the batches of the log from position from to end (each
// intact, in offset order after prevLast, inside the segment's range) and
// calls fn for each. It returns the position after the last good batch and,
// when it stopped early at a bad one, why.
func (s *Segment) walk(from, end, prevLast int64, fn func(b record.Batch, pos, size int64)) (good int64, reason string, err error) {
	sc := s.newScanner(from, end, true)
	good = from
	for {
		b, n, err := sc.next()
		if err == io.EOF {
			return good, "", nil
		}
		var be *batchErr
		if errors.As(err, &be) {
			return good, be.Error(), nil
		}
		if err != nil {
			return good, "", err
		}
		if reason := s.checkStored(b, prevLast); reason != "" {
			return good, fmt.Sprintf("position %d: %s", good, reason), nil
		}
		fn(b, good, n)
		prevLast = b.LastOffset()
		good += n
	}
}

func (s *Segment) resetLocked() {
	s.mu.size = 0
	s.mu.next = s.base
	s.mu.maxTS, s.mu.maxTSOffset, s.mu.firstTS = -1, -1, -1
	s.mu.index, s.mu.times = nil, nil
	s.mu.bytesSinceIndex = 0
}

// ensureLoaded loads the indexes from their files (rebuilding them from the
// log when missing or damaged) and the tail fields.
func (s *Segment) ensureLoaded() error {
	s.mu.RLock()
	loaded, size := s.mu.loaded, s.mu.size
	s.mu.RUnlock()
	if loaded {
		return nil
	}
	index, times, ok := s.readIndexFiles(size)
	if !ok {
		return s.rebuild(size)
	}
	// Walk the batches after the last indexed one to find the tail.
	from := int64(0)
	if len(index) > 0 {
		from = int64(index[len(index)-1].pos)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.loaded {
		return nil
	}
	s.resetLocked()
	s.mu.index, s.mu.times = index, times
	if len(times) > 0 {
		last := times[len(times)-1]
		s.mu.maxTS, s.mu.maxTSOffset = last.ts, s.base+int64(last.rel)
	}
	// The batches after the last index entry are few (an index interval
	// and one batch); check them fully, so damage at the tail is found
	// even after a clean shutdown.
	_, reason, err := s.walk(from, size, s.base-1, func(b record.Batch, pos, n int64) {
		if pos == 0 {
			s.mu.firstTS = b.MaxTimestamp()
		}
		if b.MaxTimestamp() > s.mu.maxTS {
			s.mu.maxTS, s.mu.maxTSOffset = b.MaxTimestamp(), b.LastOffset()
		}
		s.mu.next = b.LastOffset() + 1
		s.mu.bytesSinceIndex = int(pos + n - from)
	})
	if err == nil && reason != "" {
		err = fmt.Errorf("%w: %s", ErrCorrupt, reason)
	}
	if err != nil {
		return fmt.Errorf("load segment %s: %w", Name(s.base, ""), err)
	}
	if s.mu.firstTS < 0 && size > 0 {
		if ts, err := s.firstBatchMaxTimestamp(); err == nil {
			s.mu.firstTS = ts
		}
	}
	s.mu.size = size
	s.mu.loaded = true
	return nil
}

func (s *Segment) firstBatchMaxTimestamp() (int64, error) {
	var h [record.HeaderSize]byte
	if _, err := s.log.ReadAt(h[:], 0); err != nil {
		return -1, err
	}
	return record.Batch(h[:]).MaxTimestamp(), nil
}

// readIndexFiles reads and checks both index files.
func (s *Segment) readIndexFiles(logSize int64) ([]offsetEntry, []timeEntry, bool) {
	ib, err := vfs.ReadFile(s.fsys, s.path(IndexSuffix))
	if err != nil {
		return nil, nil, false
	}
	tb, err := vfs.ReadFile(s.fsys, s.path(TimeIndexSuffix))
	if err != nil {
		return nil, nil, false
	}
	index, err := decodeOffsetIndex(ib, logSize)
	if err != nil || (logSize > 0 && len(index) == 0) {
		return nil, nil, false
	}
	times, err := decodeTimeIndex(tb)
	if err != nil {
		return nil, nil, false
	}
	return index, times, true
}

// rebuild scans a sealed segment's log to rebuild missing or damaged
// indexes. Damage in the log itself is reported, not repaired: a sealed
// segment is never truncated behind the reader's back.
func (s *Segment) rebuild(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.loaded {
		return nil
	}
	s.resetLocked()
	_, reason, err := s.walk(0, size, s.base-1, func(b record.Batch, pos, n int64) {
		s.indexBatchLocked(pos, n, BatchInfo{Base: b.BaseOffset(), Last: b.LastOffset(), MaxTimestamp: b.MaxTimestamp()})
		s.mu.size = pos + n
	})
	if err == nil && reason != "" {
		err = fmt.Errorf("%w: %s", ErrCorrupt, reason)
	}
	if err != nil {
		return fmt.Errorf("rebuild indexes of segment %s: %w", Name(s.base, ""), err)
	}
	s.mu.size = size
	s.mu.loaded = true
	return nil
}

// NextOffsetOfFile walks the batch headers of a log file that is not (yet)
// a segment, such as a rewritten segment waiting to be swapped in, and
// returns the offset after its last whole batch (base when it has none).
func NextOffsetOfFile(fsys vfs.FS, path string, base int64) (int64, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return 0, err
	}
	s := &Segment{base: base, log: f}
	sc := s.newScanner(0, size, false)
	next := base
	for {
		b, _, err := sc.next()
		if err != nil {
			if err == io.EOF {
				return next, nil
			}
			var be *batchErr
			if errors.As(err, &be) {
				return next, nil
			}
			return 0, err
		}
		next = b.LastOffset() + 1
	}
}
