package broker

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/eddybroker/eddy/appliance/producer"
	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// leaderEpoch is the partition leader epoch of a single node: it never
// changes hands.
const leaderEpoch = 0

const snapshotSuffix = ".snapshot"

// partition is one partition this node leads: its log and the state of its
// idempotent producers.
type partition struct {
	b   *Broker
	tp  storage.TopicPartition
	log *partlog.Log

	appendMu sync.Mutex // check, append, update: one batch at a time
	stateMu  sync.Mutex // guards state (the roll hook takes it too)
	state    *producer.State
}

func (b *Broker) openPartition(tp storage.TopicPartition, tc topicConfig) (*partition, error) {
	cfg := tc.log
	cfg.Name = tp.String()
	l, ok := b.store.Log(tp)
	if ok {
		if err := l.SetConfig(cfg); err != nil {
			return nil, fmt.Errorf("partition %s: %w", tp, err)
		}
	} else {
		var err error
		if l, err = b.store.CreateLog(tp, cfg); err != nil {
			return nil, err
		}
	}
	p := &partition{b: b, tp: tp, log: l}
	if err := p.loadState(); err != nil {
		return nil, err
	}
	l.SetHooks(partlog.Hooks{
		OnRoll:          p.onRoll,
		OnHighWatermark: func(int64) { b.wake() },
		LastBatch:       p.lastBatch,
	})
	return p, nil
}

// loadState rebuilds producer state: the newest usable snapshot at or below
// the log end, then the batch headers after it.
func (p *partition) loadState() error {
	fsys, dir := p.b.store.FS(), p.log.Dir()
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("partition %s: %w", p.tp, err)
	}
	leo := p.log.Offsets().LEO
	var offsets []int64
	for _, n := range names {
		if off, ok := snapshotOffset(n); ok {
			offsets = append(offsets, off)
		}
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] > offsets[j] })
	p.state = producer.New()
	from := p.log.Offsets().LogStart
	for _, off := range offsets {
		path := filepath.Join(dir, segment.Name(off, snapshotSuffix))
		if off > leo {
			// Taken before a truncation: no longer describes this log.
			if err := fsys.Remove(path); err != nil && !vfs.IsNotExist(err) {
				return fmt.Errorf("partition %s: %w", p.tp, err)
			}
			continue
		}
		buf, err := vfs.ReadFile(fsys, path)
		if err != nil {
			return fmt.Errorf("partition %s: %w", p.tp, err)
		}
		at, st, err := producer.Decode(buf)
		if err != nil || at != off {
			p.b.log.Warn("ignoring a damaged producer snapshot", "partition", p.tp.String(), "file", path, "err", err)
			continue
		}
		p.state, from = st, off
		break
	}
	if from >= leo {
		return nil
	}
	err = p.log.ScanHeaders(from, func(h record.Batch) error {
		p.state.Apply(h)
		return nil
	})
	if err != nil {
		return fmt.Errorf("partition %s: rebuild producer state: %w", p.tp, err)
	}
	return nil
}

func snapshotOffset(name string) (int64, bool) {
	if !strings.HasSuffix(name, snapshotSuffix) || len(name) != 20+len(snapshotSuffix) {
		return 0, false
	}
	var n int64
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// lastBatch returns the last offset of a producer's newest batch, which
// compaction keeps so the producer's sequence survives.
func (p *partition) lastBatch(pid int64) (int64, bool) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	e, ok := p.state.Entry(pid)
	if !ok || len(e.Batches) == 0 {
		return 0, false
	}
	return e.Batches[len(e.Batches)-1].LastOffset, true
}

// onRoll snapshots the producer state at the start of the new segment. It
// runs under the log's append lock, so the state is exactly as of nextBase.
func (p *partition) onRoll(nextBase int64) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	if err := p.writeSnapshotLocked(nextBase); err != nil {
		p.b.log.Warn("producer snapshot failed; the next start replays more of the log", "partition", p.tp.String(), "err", err)
	}
}

// snapshot writes the producer state as of the log end (clean shutdown).
func (p *partition) snapshot() error {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.writeSnapshotLocked(p.log.Offsets().LEO)
}

// writeSnapshotLocked writes <offset>.snapshot and keeps the two newest.
func (p *partition) writeSnapshotLocked(offset int64) error {
	fsys, dir := p.b.store.FS(), p.log.Dir()
	p.state.Expire(p.b.cfg.Now().Add(-p.b.cfg.ProducerIDExpiration).UnixMilli())
	name := segment.Name(offset, snapshotSuffix)
	if err := vfs.WriteFileAtomic(fsys, dir, name, p.state.Encode(offset)); err != nil {
		return fmt.Errorf("partition %s: write %s: %w", p.tp, name, err)
	}
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("partition %s: %w", p.tp, err)
	}
	var offs []int64
	for _, n := range names {
		if off, ok := snapshotOffset(n); ok {
			offs = append(offs, off)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] > offs[j] })
	for _, off := range offs[min(2, len(offs)):] {
		if err := fsys.Remove(filepath.Join(dir, segment.Name(off, snapshotSuffix))); err != nil && !vfs.IsNotExist(err) {
			return fmt.Errorf("partition %s: %w", p.tp, err)
		}
	}
	return nil
}

// appendOutcome is the result of appending one produced batch.
type appendOutcome struct {
	base, last int64
	logStart   int64
	wait       func() error // waits for durability under the flush policy
	err        error        // the append failed; nothing was written
	code       int16        // the Kafka error code for err
}

var errDuplicateNotDurable = errors.New("the original of a retried batch is not durable yet")

// append checks idempotence and appends a validated batch. A retried
// duplicate is answered with its original offsets once they are durable,
// and written nothing.
func (p *partition) append(b record.Batch, stored []byte) appendOutcome {
	pid := b.ProducerID()
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	if pid >= 0 {
		p.stateMu.Lock()
		v := p.state.Check(pid, b.ProducerEpoch(), b.BaseSequence(), b.LastSequence())
		p.stateMu.Unlock()
		switch v.Outcome {
		case producer.Duplicate:
			return appendOutcome{base: v.Original.FirstOffset, last: v.Original.LastOffset, logStart: p.log.Offsets().LogStart,
				wait: func() error { return p.waitHW(v.Original.LastOffset + 1) }}
		case producer.OutOfOrder:
			return appendOutcome{err: errors.New(v.Reason), code: codeOutOfOrderSequence}
		case producer.Fenced:
			return appendOutcome{err: errors.New(v.Reason), code: codeInvalidProducerEpoch}
		}
	}
	// A produce transform may have changed what is stored; idempotence
	// follows the batch as the producer sent it.
	if stored == nil {
		stored = b
	} else if len(stored) == 0 {
		// Every record dropped by a transform: nothing to store.
		off := p.log.Offsets()
		return appendOutcome{base: off.LEO, last: off.LEO - 1, logStart: off.LogStart, wait: func() error { return nil }}
	}
	res, wait, err := p.log.AppendAsync(stored, leaderEpoch)
	if err != nil {
		return appendOutcome{err: err, code: storageErrorCode(err)}
	}
	if pid >= 0 {
		p.stateMu.Lock()
		p.state.Update(pid, b.ProducerEpoch(), producer.BatchMeta{
			FirstSeq: b.BaseSequence(), LastSeq: b.LastSequence(),
			FirstOffset: res.BaseOffset, LastOffset: res.LastOffset, MaxTimestamp: b.MaxTimestamp(),
		})
		p.stateMu.Unlock()
	}
	return appendOutcome{base: res.BaseOffset, last: res.LastOffset, logStart: res.LogStart, wait: wait}
}

// waitHW waits until the high watermark reaches offset (for a duplicate
// whose original is still in a flush window).
func (p *partition) waitHW(offset int64) error {
	for {
		ch := p.log.HWChanged()
		if p.log.Offsets().HW >= offset {
			return nil
		}
		if err := p.log.Failed(); err != nil {
			return fmt.Errorf("%w: %w", errDuplicateNotDurable, err)
		}
		select {
		case <-ch:
		case <-p.log.Done():
			return fmt.Errorf("%w: %w", errDuplicateNotDurable, partlog.ErrClosed)
		}
	}
}
