package partlog

import (
	"fmt"
	"sort"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/segment"
)

// Offsets is a consistent snapshot of a log's offsets.
type Offsets struct {
	LogStart int64 // first offset kept
	HW       int64 // high watermark: consumers read below it
	LEO      int64 // log end offset: next offset to assign
	Durable  int64 // everything below is synced
}

// Offsets returns the log's offsets.
func (l *Log) Offsets() Offsets {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return Offsets{LogStart: l.mu.logStart, HW: l.mu.hw, LEO: l.mu.leo, Durable: l.mu.durable}
}

// HWChanged returns a channel closed when the high watermark next moves (or
// the log closes), for long-polling fetches.
func (l *Log) HWChanged() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.mu.hwCh
}

// SetHighWatermark sets the HW from replication. From then on flushes no
// longer move it. It never exceeds the durable end of this replica's log
// unless the flush policy is not group commit.
func (l *Log) SetHighWatermark(hw int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.externalHW = true
	hw = min(hw, l.mu.leo)
	if hw > l.mu.hw {
		l.setHWLocked(hw)
	}
}

// ReadResult is the outcome of a read.
type ReadResult struct {
	Data []byte // whole batches, possibly empty
	Offsets
}

// Read returns whole batches starting with the one that holds offset: at
// most maxBytes, but at least one batch when any is readable. Only batches
// below the HW are returned, or below the LEO when uncommitted is set (for
// replica followers). An offset below the log start or beyond the LEO gets
// ErrOffsetOutOfRange; an offset between the HW and the LEO reads nothing.
func (l *Log) Read(offset int64, maxBytes int, uncommitted bool) (ReadResult, error) {
	return l.ReadInto(nil, offset, maxBytes, uncommitted)
}

// ReadInto is Read into buf when buf is large enough (a pooled buffer).
func (l *Log) ReadInto(buf []byte, offset int64, maxBytes int, uncommitted bool) (ReadResult, error) {
	l.mu.RLock()
	if l.mu.closed {
		l.mu.RUnlock()
		return ReadResult{}, l.errf("read", ErrClosed)
	}
	res := ReadResult{Offsets: Offsets{LogStart: l.mu.logStart, HW: l.mu.hw, LEO: l.mu.leo, Durable: l.mu.durable}}
	upTo := res.HW
	if uncommitted {
		upTo = res.LEO
	}
	if offset < res.LogStart || offset > res.LEO {
		l.mu.RUnlock()
		return res, l.errf("read", fmt.Errorf("%w: offset %d, log spans [%d, %d]", ErrOffsetOutOfRange, offset, res.LogStart, res.LEO))
	}
	if offset >= upTo {
		l.mu.RUnlock()
		return res, nil
	}
	segs := l.mu.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Base() > offset }) - 1
	i = max(i, 0)
	// Hold references so retention cannot close the files under us.
	var held []*segment.Segment
	for j := i; j < len(segs); j++ {
		if segs[j].Ref() {
			held = append(held, segs[j])
		}
	}
	l.mu.RUnlock()
	defer func() {
		for _, s := range held {
			s.Unref()
		}
	}()
	// A segment may end in an offset gap left by compaction: then the
	// data is in the next one.
	for _, s := range held {
		data, err := s.Read(offset, maxBytes, upTo, buf)
		if err != nil {
			return res, l.errf("read", err)
		}
		if data != nil {
			res.Data = data
			return res, nil
		}
	}
	return res, nil
}

// OffsetForTimestamp returns the first offset below the HW whose record
// timestamp is at least ts, with that record's timestamp; found is false
// when there is none.
func (l *Log) OffsetForTimestamp(ts int64) (offset, recordTS int64, found bool, err error) {
	segs, off, release := l.refSegments()
	defer release()
	maxUnc := l.cfg.Load().MaxUncompressed
	for _, s := range segs {
		o, rts, ok, err := s.FindTimestamp(ts, off.LogStart, maxUnc)
		if err != nil {
			return 0, 0, false, l.errf("search", err)
		}
		if !ok {
			continue
		}
		if o >= off.HW {
			return 0, 0, false, nil
		}
		return o, rts, true, nil
	}
	return 0, 0, false, nil
}

// MaxTimestamp returns the largest record timestamp below the HW and the
// offset of the record that carries it; found is false for an empty log.
func (l *Log) MaxTimestamp() (ts, offset int64, found bool, err error) {
	segs, off, release := l.refSegments()
	defer release()
	best, bestSeg, bestBatchLast := int64(-1), (*segment.Segment)(nil), int64(-1)
	for _, s := range segs {
		t, o, err := s.MaxTimestamp()
		if err != nil {
			return 0, 0, false, l.errf("search", err)
		}
		if o >= 0 && o < off.HW && o >= off.LogStart && t > best {
			best, bestSeg, bestBatchLast = t, s, o
		}
	}
	if bestSeg == nil {
		return 0, 0, false, nil
	}
	o, err := bestSeg.RecordOffsetOfTimestamp(bestBatchLast, best, l.cfg.Load().MaxUncompressed)
	if err != nil {
		return 0, 0, false, l.errf("search", err)
	}
	return best, o, true, nil
}

// refSegments returns referenced segments, the offsets, and a release func.
func (l *Log) refSegments() ([]*segment.Segment, Offsets, func()) {
	l.mu.RLock()
	off := Offsets{LogStart: l.mu.logStart, HW: l.mu.hw, LEO: l.mu.leo, Durable: l.mu.durable}
	var held []*segment.Segment
	for _, s := range l.mu.segs {
		if s.Ref() {
			held = append(held, s)
		}
	}
	l.mu.RUnlock()
	return held, off, func() {
		for _, s := range held {
			s.Unref()
		}
	}
}

// Size returns the bytes held by all segments.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.mu.segs {
		n += s.Size()
	}
	return n
}

// SegmentCount returns the number of segments.
func (l *Log) SegmentCount() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.mu.segs)
}

// ScanHeaders calls fn with the header of every batch from the one holding
// offset from up to the LEO, in order (used to rebuild producer state).
// The header is valid only during the call.
func (l *Log) ScanHeaders(from int64, fn func(hdr record.Batch) error) error {
	segs, _, release := l.refSegments()
	defer release()
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].Base() <= from {
			continue
		}
		if err := s.ScanHeaders(from, fn); err != nil {
			return l.errf("scan", err)
		}
	}
	return nil
}
