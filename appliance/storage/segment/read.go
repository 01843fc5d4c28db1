package segment

import (
	"errors"
	"fmt"
	"io"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// locate returns the position of the first batch whose last offset is at
// least offset, and that batch's header; ok is false when no such batch
// exists in the segment.
func (s *Segment) locate(offset int64) (pos int64, hdr record.Batch, ok bool, err error) {
	if err := s.ensureLoaded(); err != nil {
		return 0, nil, false, err
	}
	s.mu.RLock()
	size := s.mu.size
	start := int64(0)
	if offset > s.base {
		rel := uint32(min(offset-s.base, maxRel))
		// Entries map a batch's last offset to its start; the batch
		// holding offset starts at or after the floor entry of offset-1.
		start = floorOffset(s.mu.index, rel-1)
	}
	s.mu.RUnlock()
	sc := s.newScanner(start, size, false)
	defer sc.release()
	for {
		b, n, err := sc.next()
		if err == io.EOF {
			return 0, nil, false, nil
		}
		if err != nil {
			return 0, nil, false, fmt.Errorf("read segment %s: %w: %v", Name(s.base, ""), ErrCorrupt, err)
		}
		if b.LastOffset() >= offset {
			h := make(record.Batch, record.HeaderSize)
			copy(h, b)
			return sc.pos - n, h, true, nil
		}
	}
}

// Read returns whole batches starting with the one that holds offset (or the
// first after it): at most maxBytes, but always at least one batch, and only
// batches whose base offset is below upTo. It returns nil when the segment
// holds nothing at or after offset below upTo. The result uses buf when it
// is large enough.
func (s *Segment) Read(offset int64, maxBytes int, upTo int64, buf []byte) ([]byte, error) {
	pos, first, ok, err := s.locate(offset)
	if err != nil || !ok || first.BaseOffset() >= upTo {
		return nil, err
	}
	size := s.Size()
	n := int64(max(maxBytes, first.Size()))
	n = min(n, size-pos)
	if int64(cap(buf)) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := s.log.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read segment %s at %d: %w", Name(s.base, ""), pos, err)
	}
	// Keep whole batches below upTo.
	end := 0
	for end < len(buf) {
		sz, ok := record.PeekSize(buf[end:])
		if !ok || sz < record.HeaderSize || end+sz > len(buf) {
			break
		}
		b := record.Batch(buf[end : end+sz])
		if b.BaseOffset() >= upTo {
			break
		}
		if s.opts.VerifyReads {
			if _, err := record.Check(b); err != nil {
				if end > 0 {
					break // serve what precedes it; the next read reports it
				}
				return nil, fmt.Errorf("read segment %s at %d: %w: %v", Name(s.base, ""), pos, ErrCorrupt, err)
			}
		}
		end += sz
	}
	if end == 0 {
		return nil, fmt.Errorf("read segment %s at %d: %w: batch does not fit in the log", Name(s.base, ""), pos, ErrCorrupt)
	}
	return buf[:end], nil
}

// FindTimestamp returns the offset and timestamp of the first record at or
// after offset from whose timestamp is at least ts; found is false when the
// segment has none.
func (s *Segment) FindTimestamp(ts, from int64, maxUncompressed int) (offset, recordTS int64, found bool, err error) {
	if err := s.ensureLoaded(); err != nil {
		return 0, 0, false, err
	}
	s.mu.RLock()
	maxTS, size := s.mu.maxTS, s.mu.size
	start := int64(0)
	if rel, ok := floorTime(s.mu.times, ts); ok {
		start = floorOffset(s.mu.index, rel)
	}
	s.mu.RUnlock()
	if maxTS < ts {
		return 0, 0, false, nil
	}
	sc := s.newScanner(start, size, true)
	for {
		b, _, err := sc.next()
		if err == io.EOF {
			return 0, 0, false, nil
		}
		if err != nil {
			return 0, 0, false, fmt.Errorf("search segment %s: %w: %v", Name(s.base, ""), ErrCorrupt, err)
		}
		if b.MaxTimestamp() < ts || b.IsControl() || b.LastOffset() < from {
			continue
		}
		if b.Attributes()&record.AttrLogAppendTime != 0 {
			// LogAppendTime batches carry one timestamp for all records.
			return max(b.BaseOffset(), from), b.MaxTimestamp(), true, nil
		}
		found := false
		err = b.EachRecord(maxUncompressed, func(r *record.Record) error {
			if r.Timestamp >= ts && r.Offset >= from {
				offset, recordTS, found = r.Offset, r.Timestamp, true
				return errStop
			}
			return nil
		})
		if err != nil && err != errStop {
			return 0, 0, false, fmt.Errorf("search segment %s: %w", Name(s.base, ""), err)
		}
		if found {
			return offset, recordTS, true, nil
		}
	}
}

// RecordOffsetOfTimestamp returns the offset of the first record carrying
// exactly ts in the batch whose last offset is batchLast.
func (s *Segment) RecordOffsetOfTimestamp(batchLast, ts int64, maxUncompressed int) (int64, error) {
	pos, hdr, ok, err := s.locate(batchLast)
	if err != nil || !ok {
		return batchLast, err
	}
	buf := make([]byte, hdr.Size())
	if _, err := s.log.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read segment %s at %d: %w", Name(s.base, ""), pos, err)
	}
	b := record.Batch(buf)
	if b.Attributes()&record.AttrLogAppendTime != 0 {
		return b.BaseOffset(), nil
	}
	off := batchLast
	err = b.EachRecord(maxUncompressed, func(r *record.Record) error {
		if r.Timestamp == ts {
			off = r.Offset
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return 0, fmt.Errorf("read segment %s: %w", Name(s.base, ""), err)
	}
	return off, nil
}

var errStop = errors.New("stop")

// TruncateTo removes every batch whose last offset is at least offset (so a
// batch holding offset goes too, as in Kafka), syncs the log and drops the
// stale index files. It returns the new next offset.
func (s *Segment) TruncateTo(offset int64) (int64, error) {
	pos, _, ok, err := s.locate(offset)
	if err != nil {
		return 0, err
	}
	if !ok {
		return s.NextOffset()
	}
	if err := s.log.Truncate(pos); err != nil {
		return 0, fmt.Errorf("truncate segment %s at %d: %w", Name(s.base, ""), pos, err)
	}
	if err := s.Sync(); err != nil {
		return 0, err
	}
	for _, suf := range []string{IndexSuffix, TimeIndexSuffix} {
		if err := s.fsys.Remove(s.path(suf)); err != nil && !vfs.IsNotExist(err) {
			return 0, fmt.Errorf("truncate segment %s: %w", Name(s.base, ""), err)
		}
	}
	// Truncation is rare (replica divergence): rebuild the in-memory
	// state by scanning what is left.
	s.mu.Lock()
	s.mu.loaded = false
	s.mu.size = pos
	s.writebackFrom = min(s.writebackFrom, pos&^(pageSize-1))
	s.mu.Unlock()
	if err := s.rebuild(pos); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.mu.preallocEnd = pos
	next := s.mu.next
	s.mu.Unlock()
	return next, nil
}

// ScanHeaders calls fn with the header (the first record.HeaderSize bytes,
// valid only during the call) of every batch whose last offset is at least
// from, in order.
func (s *Segment) ScanHeaders(from int64, fn func(hdr record.Batch) error) error {
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	s.mu.RLock()
	size := s.mu.size
	start := int64(0)
	if from > s.base {
		start = floorOffset(s.mu.index, uint32(min(from-s.base, maxRel))-1)
	}
	s.mu.RUnlock()
	sc := s.newScanner(start, size, false)
	defer sc.release()
	for {
		b, _, err := sc.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("scan segment %s: %w: %v", Name(s.base, ""), ErrCorrupt, err)
		}
		if b.LastOffset() < from {
			continue
		}
		if err := fn(b); err != nil {
			return err
		}
	}
}
