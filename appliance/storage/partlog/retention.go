package partlog

import (
	"fmt"
	"sort"

	"github.com/eddybroker/eddy/appliance/storage/segment"
)

// RetentionResult says what a retention pass removed.
type RetentionResult struct {
	DeletedSegments int
	DeletedBytes    int64
	LogStart        int64
}

// EnforceRetention deletes whole non-active segments, oldest first, that
// are wholly below the log start, older than retention.ms (by their largest
// timestamp) or beyond retention.bytes; only segments wholly below the HW
// are eligible. If the active segment has expired by time it is rolled first
// so it can go. The log start moves up to the first remaining segment and
// never moves back. nowMs is the injected clock, in Unix milliseconds.
func (l *Log) EnforceRetention(nowMs int64) (RetentionResult, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	var res RetentionResult
	l.mu.RLock()
	closed, failed := l.mu.closed, l.mu.failed
	l.mu.RUnlock()
	if closed {
		return res, l.errf("retention of", ErrClosed)
	}
	cfg := l.cfg.Load()
	expired := func(s *segment.Segment) (bool, error) {
		if cfg.RetentionMs < 0 {
			return false, nil
		}
		ts, _, err := s.MaxTimestamp()
		if err != nil {
			return false, err
		}
		return ts >= 0 && nowMs-ts > cfg.RetentionMs.Milliseconds(), nil
	}
	// Roll an expired active segment so it becomes deletable.
	if act := l.active(); failed == nil && act.Size() > 0 {
		exp, err := expired(act)
		if err != nil {
			return res, l.errf("retention of", err)
		}
		l.mu.RLock()
		allCommitted := l.mu.hw == l.mu.leo
		l.mu.RUnlock()
		if exp && allCommitted {
			if err := l.rollLocked(); err != nil {
				return res, err
			}
		}
	}
	l.mu.RLock()
	segs := append([]*segment.Segment(nil), l.mu.segs...)
	logStart, hw := l.mu.logStart, l.mu.hw
	l.mu.RUnlock()
	var total int64
	for _, s := range segs {
		total += s.Size()
	}
	n := 0 // segments to delete: a prefix of segs, never the active one
	for n < len(segs)-1 {
		s, next := segs[n], segs[n+1].Base()
		if next > hw {
			break
		}
		del := next <= logStart
		if !del {
			exp, err := expired(s)
			if err != nil {
				return res, l.errf("retention of", err)
			}
			del = exp
		}
		if !del && cfg.RetentionBytes >= 0 && total-s.Size() >= cfg.RetentionBytes {
			del = true
		}
		if !del {
			break
		}
		total -= s.Size()
		res.DeletedBytes += s.Size()
		n++
	}
	if n == 0 {
		res.LogStart = logStart
		return res, nil
	}
	if err := l.deletePrefixLocked(n); err != nil {
		return res, err
	}
	res.DeletedSegments = n
	l.mu.RLock()
	res.LogStart = l.mu.logStart
	l.mu.RUnlock()
	return res, nil
}

// deletePrefixLocked deletes the n oldest segments. The checkpoint with the
// new log start is written first, so a crash part way leaves a log start
// that already covers whatever files remain.
func (l *Log) deletePrefixLocked(n int) error {
	l.mu.Lock()
	doomed := append([]*segment.Segment(nil), l.mu.segs[:n]...)
	newStart := max(l.mu.logStart, l.mu.segs[n].Base())
	cp := l.cpLocked()
	cp.logStart = newStart
	cp.cleanerOffset = max(cp.cleanerOffset, newStart)
	l.mu.Unlock()
	if err := writeCheckpoint(l.fsys, l.dir, cp); err != nil {
		return l.errf("retention of", err)
	}
	l.mu.Lock()
	l.mu.logStart = newStart
	l.mu.cleanerOffset = cp.cleanerOffset
	l.mu.segs = append([]*segment.Segment(nil), l.mu.segs[n:]...)
	l.mu.Unlock()
	for _, s := range doomed {
		if err := s.Delete(); err != nil {
			return l.errf("retention of", err)
		}
	}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		return l.errf("retention of", err)
	}
	return nil
}

// DeleteRecords moves the log start to offset (Kafka's DeleteRecords): the
// new start is durable before it returns; segments wholly below it go at the
// next retention pass. It never moves the log start backwards, and offset
// may not exceed the HW. It returns the resulting log start.
func (l *Log) DeleteRecords(offset int64) (int64, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.RLock()
	start, hw, closed := l.mu.logStart, l.mu.hw, l.mu.closed
	cp := l.cpLocked()
	l.mu.RUnlock()
	if closed {
		return 0, l.errf("delete records of", ErrClosed)
	}
	if offset > hw || offset < 0 {
		return start, l.errf("delete records of", fmt.Errorf("%w: offset %d, high watermark %d", ErrOffsetOutOfRange, offset, hw))
	}
	if offset <= start {
		return start, nil
	}
	cp.logStart = offset
	cp.cleanerOffset = max(cp.cleanerOffset, offset)
	if err := writeCheckpoint(l.fsys, l.dir, cp); err != nil {
		return start, l.errf("delete records of", err)
	}
	l.mu.Lock()
	l.mu.logStart = offset
	l.mu.cleanerOffset = cp.cleanerOffset
	l.mu.Unlock()
	return offset, nil
}

// TruncateTo removes every batch whose last offset is at least offset (a
// batch holding offset goes too), for a replica whose log diverged from its
// leader's. The recovery point is lowered first, so a crash part way is
// finished by recovery. It returns the new LEO.
func (l *Log) TruncateTo(offset int64) (int64, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.RLock()
	leo, start, closed := l.mu.leo, l.mu.logStart, l.mu.closed
	segs := append([]*segment.Segment(nil), l.mu.segs...)
	l.mu.RUnlock()
	if closed {
		return 0, l.errf("truncate", ErrClosed)
	}
	if offset >= leo {
		return leo, nil
	}
	if offset <= start {
		if err := l.truncateFullyLocked(offset); err != nil {
			return 0, err
		}
		return offset, nil
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Base() > offset }) - 1
	i = max(i, 0)
	// Lower the recovery point first: a crash part way through is then
	// finished by recovery scanning from segs[i].
	l.mu.RLock()
	cp := l.cpLocked()
	l.mu.RUnlock()
	cp.recoveryPoint = segs[i].Base()
	cp.cleanerOffset = min(cp.cleanerOffset, offset)
	if err := writeCheckpoint(l.fsys, l.dir, cp); err != nil {
		return 0, l.errf("truncate", err)
	}
	l.mu.Lock()
	l.mu.recoveryPoint = cp.recoveryPoint
	l.mu.cleanerOffset = cp.cleanerOffset
	l.mu.segs = segs[:i+1]
	l.mu.Unlock()
	for _, s := range segs[i+1:] {
		if err := s.Delete(); err != nil {
			l.fail(err)
			return 0, l.errf("truncate", err)
		}
	}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		l.fail(err)
		return 0, l.errf("truncate", err)
	}
	next, err := segs[i].TruncateTo(offset)
	if err == nil {
		err = segs[i].Unseal()
	}
	if err != nil {
		l.fail(err)
		return 0, l.errf("truncate", err)
	}
	l.mu.Lock()
	l.mu.leo = next
	l.mu.durable = min(l.mu.durable, next)
	if l.mu.hw > next {
		l.setHWLocked(next)
	}
	l.mu.Unlock()
	return next, nil
}

// TruncateFullyAndStartAt empties the log and restarts it at offset (a
// follower whose log is entirely behind the leader's log start).
func (l *Log) TruncateFullyAndStartAt(offset int64) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	return l.truncateFullyLocked(offset)
}

func (l *Log) truncateFullyLocked(offset int64) error {
	if err := writeCheckpoint(l.fsys, l.dir, checkpoint{logStart: offset, recoveryPoint: offset, cleanerOffset: offset}); err != nil {
		return l.errf("truncate", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.resetToLocked(offset); err != nil {
		l.mu.failed = err
		return l.errf("truncate", err)
	}
	l.mu.cleanerOffset = offset
	l.mu.recoveryPoint = offset
	close(l.mu.hwCh)
	l.mu.hwCh = make(chan struct{})
	return nil
}
