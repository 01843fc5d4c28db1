package partlog

import (
	"errors"
	"fmt"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/segment"
)

// AppendResult says where a batch landed.
type AppendResult struct {
	BaseOffset int64
	LastOffset int64
	LogStart   int64
}

// Append assigns the next offsets to one validated batch, stamps its base
// offset and leader epoch (the only bytes it changes, both outside the CRC),
// writes it and, under the group flush policy, returns once it is durable.
// The batch's bytes are taken over by the log.
func (l *Log) Append(batch []byte, leaderEpoch int32) (AppendResult, error) {
	w, res, err := l.appendNoWait(batch, leaderEpoch)
	if err != nil {
		return res, err
	}
	return res, l.waitDurable(w)
}

// AppendAsync is Append without waiting: it returns a function that waits
// for durability, so a caller can append to many partitions and wait once.
func (l *Log) AppendAsync(batch []byte, leaderEpoch int32) (AppendResult, func() error, error) {
	w, res, err := l.appendNoWait(batch, leaderEpoch)
	if err != nil {
		return res, nil, err
	}
	return res, func() error { return l.waitDurable(w) }, nil
}

func (l *Log) appendNoWait(batch []byte, leaderEpoch int32) (*flush.Window, AppendResult, error) {
	b := record.Batch(batch)
	if len(b) < record.HeaderSize || b.Size() != len(b) {
		return nil, AppendResult{}, l.errf("append to", fmt.Errorf("%w: not one whole batch", record.ErrCorrupt))
	}
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.RLock()
	base, failed, closed := l.mu.leo, l.mu.failed, l.mu.closed
	l.mu.RUnlock()
	if closed {
		return nil, AppendResult{}, l.errf("append to", ErrClosed)
	}
	if failed != nil {
		return nil, AppendResult{}, l.errf("append to", fmt.Errorf("%w, refusing appends until reopened: %w", ErrFailed, failed))
	}
	b.SetBaseOffset(base)
	b.SetLeaderEpoch(leaderEpoch)
	last := b.LastOffset()
	if err := l.maybeRollLocked(len(b), last, b.MaxTimestamp()); err != nil {
		return nil, AppendResult{}, err
	}
	seg := l.active()
	if err := seg.Append(b, []segment.BatchInfo{{Base: base, Last: last, MaxTimestamp: b.MaxTimestamp()}}); err != nil {
		// A failed write leaves the file as it was (the segment cuts a
		// partial write back), so appends may go on once the cause is
		// gone; only a failed cut-back leaves bytes we cannot account
		// for.
		if errors.Is(err, segment.ErrTorn) {
			l.fail(err)
		}
		return nil, AppendResult{}, l.errf("append to", err)
	}
	if l.committer.Mode() != flush.OS { // with no flush to come, the kernel decides when to write
		seg.StartWriteback()
	}
	l.mu.Lock()
	l.mu.leo = last + 1
	res := AppendResult{BaseOffset: base, LastOffset: last, LogStart: l.mu.logStart}
	if l.committer.Mode() != flush.Group && !l.mu.externalHW {
		l.setHWLocked(l.mu.leo)
	}
	l.mu.Unlock()
	w, err := l.committer.Add(l, len(b))
	if err != nil {
		return nil, res, l.errf("append to", err)
	}
	return w, res, nil
}

func (l *Log) waitDurable(w *flush.Window) error {
	if w == nil || l.committer.Mode() != flush.Group {
		return nil
	}
	if err := w.Wait(l); err != nil {
		return l.errf("append to", err)
	}
	return nil
}

// Flush makes everything appended so far durable; the group committer calls
// it once per flush window. A failure poisons the log.
func (l *Log) Flush() error {
	seg, end, err := l.beginFlush()
	if seg == nil {
		return err // failed, or the segment was deleted by truncation (its data is gone, not pending)
	}
	err = seg.Sync()
	seg.Unref()
	return l.flushed(end, err)
}

// BeginFlush is Flush in two parts, for a flush that syncs the whole
// filesystem once for many logs: it captures what a flush starting now
// covers and returns the filesystem's ID and its sync; the caller runs
// the sync (once for every log with that ID) and passes its result to
// finish, which completes this log's flush and returns its result as
// Flush would. ok is false when the log cannot take part (it failed, its
// segment went away, or its file has no filesystem sync): call Flush.
func (l *Log) BeginFlush() (fs uint64, sync func() error, finish func(error) error, ok bool) {
	seg, end, _ := l.beginFlush()
	if seg == nil {
		return 0, nil, nil, false
	}
	if fs, sync, ok = seg.FSSync(); !ok {
		seg.Unref()
		return 0, nil, nil, false
	}
	return fs, sync, func(err error) error {
		seg.Unref()
		return l.flushed(end, err)
	}, true
}

// beginFlush captures what a flush starting now covers: the active
// segment, referenced (the caller unrefs it), and the log end. seg is nil
// when the log has failed (err says why) or the segment was deleted.
func (l *Log) beginFlush() (seg *segment.Segment, end int64, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.mu.failed != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrFailed, l.mu.failed)
	}
	seg, end = l.active(), l.mu.leo
	if !seg.Ref() {
		return nil, 0, nil
	}
	return seg, end, nil
}

// flushed completes a flush that covered the log up to end: a failed sync
// poisons the log, a good one makes end durable.
func (l *Log) flushed(end int64, err error) error {
	if err != nil {
		l.fail(err)
		return err
	}
	l.mu.Lock()
	if end > l.mu.durable {
		l.mu.durable = end
		if !l.mu.externalHW {
			l.setHWLocked(end)
		}
	}
	l.mu.Unlock()
	return nil
}

// fail poisons the log.
func (l *Log) fail(err error) {
	l.mu.Lock()
	if l.mu.failed == nil {
		l.mu.failed = err
	}
	l.mu.Unlock()
}

// Failed returns the error that poisoned the log, or nil.
func (l *Log) Failed() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.mu.failed
}

func (l *Log) setHWLocked(hw int64) {
	if hw == l.mu.hw {
		return
	}
	l.mu.hw = hw
	close(l.mu.hwCh)
	l.mu.hwCh = make(chan struct{})
	if h := l.hooks.Load(); h != nil && h.OnHighWatermark != nil {
		h.OnHighWatermark(hw)
	}
}

// maybeRollLocked rolls to a new segment when the batch does not belong in
// the active one. Called with appendMu held.
func (l *Log) maybeRollLocked(size int, last, maxTS int64) error {
	cfg := l.cfg.Load()
	seg := l.active()
	reason := seg.RollReason(size, last, cfg.SegmentBytes)
	if reason == "" && cfg.SegmentMs > 0 && seg.Size() > 0 {
		// As Kafka does: the age is the incoming batch's timestamp minus
		// the first batch's, or wall time since the segment was created
		// when the first batch carries none.
		waited := l.now().UnixMilli() - l.activeCreated.Load()
		if first := seg.FirstTimestamp(); first >= 0 {
			waited = maxTS - first
		}
		if waited > cfg.SegmentMs.Milliseconds() {
			reason = "age"
		}
	}
	if reason == "" {
		return nil
	}
	return l.rollLocked()
}

// Roll seals the active segment and starts a new one at the log end, if
// the active segment holds anything.
func (l *Log) Roll() error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.active().Size() == 0 {
		return nil
	}
	return l.rollLocked()
}

// rollLocked seals the active segment (sync, index files), creates the next
// one, syncs the directory and advances the recovery point.
func (l *Log) rollLocked() error {
	old := l.active()
	l.mu.RLock()
	next := l.mu.leo
	l.mu.RUnlock()
	if err := old.Seal(); err != nil {
		if errors.Is(err, segment.ErrSync) {
			l.fail(err)
		} else if uerr := old.Unseal(); uerr != nil {
			l.fail(uerr)
		}
		return l.errf("roll", err)
	}
	l.mu.RLock()
	cp := l.cpLocked()
	cp.recoveryPoint = next
	l.mu.RUnlock()
	// The checkpoint write syncs the directory, which also makes the new
	// segment's file durable.
	s, err := segment.Create(l.fsys, l.dir, next, l.cfg.Load().segOpts())
	if err == nil {
		if err = writeCheckpoint(l.fsys, l.dir, cp); err != nil {
			s.Delete()
		}
	}
	if err != nil {
		if uerr := old.Unseal(); uerr != nil {
			l.fail(uerr)
		}
		return l.errf("roll", err)
	}
	l.activeCreated.Store(l.now().UnixMilli())
	l.mu.Lock()
	l.mu.segs = append(l.mu.segs, s)
	l.mu.recoveryPoint = next
	l.mu.Unlock()
	if h := l.hooks.Load(); h != nil && h.OnRoll != nil {
		h.OnRoll(next)
	}
	return nil
}
