package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumeRun drives the consumers of one run and decides when it is done.
type consumeRun struct {
	o     *benchOpts
	rec   *recorder
	runID uint64          // non-zero: count only records stamped by this run, with their latency
	ends  map[int32]int64 // non-nil: count only records below these offsets
	limit atomic.Int64    // records to count; -1 while unknown
	got   atomic.Int64    // records claimed toward limit
	last  atomic.Int64    // Unix nanoseconds of the last counted record or of the start

	assigned atomic.Int64 // partitions held by group members
	done     chan struct{}
	doneOnce sync.Once
}

func newConsumeRun(o *benchOpts, rec *recorder, runID uint64) *consumeRun {
	c := &consumeRun{o: o, rec: rec, runID: runID, done: make(chan struct{})}
	c.limit.Store(-1)
	c.last.Store(time.Now().UnixNano())
	return c
}

// check closes done once the limit is reached.
func (c *consumeRun) check() {
	if lim := c.limit.Load(); lim >= 0 && c.got.Load() >= lim {
		c.doneOnce.Do(func() { close(c.done) })
	}
}

// clientOpts are the kgo options of consumer idx of n, given the
// topic's partitions and where each consumer starts.
func (c *consumeRun) clientOpts(idx, n int, partitions int32, start func(p int32) kgo.Offset, reset kgo.Offset) []kgo.Opt {
	o := c.o
	if o.assign == "group" {
		topicAssigned := func(m map[string][]int32) int64 { return int64(len(m[o.topic])) }
		return []kgo.Opt{
			kgo.ConsumerGroup(o.group), kgo.ConsumeTopics(o.topic), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(reset),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.assigned.Add(topicAssigned(m)) }),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.assigned.Add(-topicAssigned(m)) }),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.assigned.Add(-topicAssigned(m)) }),
		}
	}
	parts := map[int32]kgo.Offset{}
	for p := int32(idx); p < partitions; p += int32(n) {
		parts[p] = start(p)
	}
	if len(parts) == 0 {
		return nil
	}
	return []kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: parts})}
}

// startConsumers makes the consumer clients and starts their loops; the
// returned stop ends the loops and closes the clients.
func (c *consumeRun) startConsumers(ctx context.Context, partitions int32, start func(p int32) kgo.Offset, reset kgo.Offset) (stop func(), err error) {
	o := c.o
	var cls []*kgo.Client
	for i := 0; i < o.consumers; i++ {
		opts := c.clientOpts(i, o.consumers, partitions, start, reset)
		if opts == nil {
			continue // more consumers than partitions
		}
		cl, err := o.connect(ctx, fmt.Sprintf("consumer %d", i), opts...)
		if err != nil {
			closeClients(cls)
			return nil, err
		}
		cls = append(cls, cl)
	}
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, cl := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.consume(cctx, cl)
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			closeClients(cls)
		})
	}, nil
}

// consume is one consumer's poll loop.
func (c *consumeRun) consume(ctx context.Context, cl *kgo.Client) {
	var lats []int64
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrClientClosed) {
				c.rec.fail(fmt.Errorf("fetch %s/%d: %w", t, p, err))
			}
		})
		now := time.Now()
		lats = lats[:0]
		n, size := 0, 0
		lim := c.limit.Load()
		fs.EachRecord(func(r *kgo.Record) {
			if c.ends != nil {
				if end, ok := c.ends[r.Partition]; !ok || r.Offset >= end {
					return
				}
			}
			var sent int64
			if c.runID != 0 {
				if sent = c.stamp(r); sent == 0 {
					return
				}
			}
			if got := c.got.Add(1); c.o.recordsSet && c.o.mode == "consume" && got > lim {
				return // --records reached by another consumer
			}
			if sent != 0 {
				lats = append(lats, now.UnixNano()-sent)
			}
			n++
			size += len(r.Key) + len(r.Value)
		})
		if n > 0 {
			c.rec.doneBatch(now, lats, n, size)
			c.last.Store(now.UnixNano())
		}
		c.check()
	}
}

// stamp returns the send time of a record of this run, or 0.
func (c *consumeRun) stamp(r *kgo.Record) int64 {
	for _, h := range r.Headers {
		if h.Key == stampHeader && len(h.Value) == 16 && binary.BigEndian.Uint64(h.Value) == c.runID {
			return int64(binary.BigEndian.Uint64(h.Value[8:]))
		}
	}
	return 0
}

// wait returns when the limit is reached, ctx ends, the deadline passes
// (when not zero) or the consumers made no progress for --timeout.
func (c *consumeRun) wait(ctx context.Context, deadline time.Time) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if !deadline.IsZero() && now.After(deadline) {
				return nil
			}
			if idle := now.Sub(time.Unix(0, c.last.Load())); idle > c.o.timeout {
				lim := "?"
				if l := c.limit.Load(); l >= 0 {
					lim = fmt.Sprint(l)
				}
				return fmt.Errorf("consumers read nothing for %s (--timeout): %d of %s records read", c.o.timeout, c.rec.records.Load(), lim)
			}
		}
	}
}

// waitAssigned waits until group members hold all partitions.
func (c *consumeRun) waitAssigned(ctx context.Context, partitions int32) error {
	deadline := time.Now().Add(c.o.timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.assigned.Load() < int64(partitions) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if now.After(deadline) {
				return fmt.Errorf("group %s: %d of %d partitions assigned after %s", c.o.group, c.assigned.Load(), partitions, c.o.timeout)
			}
		}
	}
	return nil
}

// benchConsume runs `eddy bench consume`.
func benchConsume(ctx context.Context, cmd *cobra.Command, o *benchOpts, adm *kadm.Client, res *result) error {
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	starts, err := adm.ListStartOffsets(lctx, o.topic)
	var ends kadm.ListedOffsets
	if err == nil {
		ends, err = adm.ListEndOffsets(lctx, o.topic)
	}
	cancel()
	if err == nil {
		err = errors.Join(starts.Error(), ends.Error())
	}
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", o.topic, err)
	}
	rec := newRecorder()
	c := newConsumeRun(o, rec, 0)
	var deadline time.Time
	switch {
	case o.recordsSet:
		c.limit.Store(o.records)
	case o.durationSet:
		deadline = time.Now().Add(o.duration)
	default:
		c.ends = map[int32]int64{}
		var total int64
		ends.Each(func(e kadm.ListedOffset) {
			s, _ := starts.Lookup(o.topic, e.Partition)
			c.ends[e.Partition] = e.Offset
			total += max(e.Offset-s.Offset, 0)
		})
		c.limit.Store(total)
	}
	start := func(p int32) kgo.Offset {
		s, _ := starts.Lookup(o.topic, p)
		return kgo.NewOffset().At(s.Offset)
	}
	partitions := int32(len(ends[o.topic]))
	prog := startProgress(cmd.ErrOrStderr(), o.progressEnabled(), time.Now(), nil, rec)
	defer prog.close()
	rec.start(time.Now())
	stop, err := c.startConsumers(ctx, partitions, start, kgo.NewOffset().AtStart())
	if err != nil {
		return err
	}
	defer stop()
	if o.assign == "group" && c.limit.Load() != 0 {
		// Time the reading, not the joining.
		if err := c.waitAssigned(ctx, partitions); err != nil {
			return err
		}
		rec.start(time.Now())
	}
	c.last.Store(time.Now().UnixNano())
	c.check()
	err = c.wait(ctx, deadline)
	stop()
	prog.close()
	res.Consume = rec.summary("")
	return err
}

// benchE2E runs `eddy bench e2e`: consumers start at the topic's end (or
// join their group and wait for every partition), then the producers
// send stamped records, and the run ends when every acknowledged record
// was consumed.
func benchE2E(ctx context.Context, cmd *cobra.Command, o *benchOpts, adm *kadm.Client, partitions int32, res *result) error {
	runID := rand.Uint64() | 1
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	ends, err := adm.ListEndOffsets(lctx, o.topic)
	cancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", o.topic, err)
	}
	prodRec, consRec := newRecorder(), newRecorder()
	c := newConsumeRun(o, consRec, runID)
	start := func(p int32) kgo.Offset {
		e, _ := ends.Lookup(o.topic, p)
		return kgo.NewOffset().At(e.Offset)
	}
	// Group members that find no committed offset start at the first
	// record stamped at or after now: every record of this run.
	reset := kgo.NewOffset().AfterMilli(time.Now().UnixMilli())
	stop, err := c.startConsumers(ctx, partitions, start, reset)
	if err != nil {
		return err
	}
	defer stop()
	if o.assign == "group" {
		if err := c.waitAssigned(ctx, partitions); err != nil {
			return err
		}
	}
	cls, err := o.clients(ctx, o.producers, "producer", o.producerOpts()...)
	if err != nil {
		return err
	}
	defer closeClients(cls)
	pr, err := newProduceRun(o, prodRec, runID)
	if err != nil {
		return err
	}
	prog := startProgress(cmd.ErrOrStderr(), o.progressEnabled(), time.Now(), prodRec, consRec)
	defer prog.close()
	c.last.Store(time.Now().UnixNano())
	consRec.start(time.Now())
	perr := pr.run(ctx, cls)
	// Every record acknowledged must arrive; also count what failed to be
	// acknowledged but was written all the same.
	c.limit.Store(prodRec.records.Load())
	c.last.Store(max(c.last.Load(), time.Now().UnixNano()))
	c.check()
	cerr := c.wait(ctx, time.Time{})
	stop()
	prog.close()
	res.Produce = prodRec.summary("send to acknowledgement")
	res.Consume = consRec.summary("intended send to consumption")
	missing := max(prodRec.records.Load()-consRec.records.Load(), 0)
	res.Consume.Missing = &missing
	return errors.Join(perr, cerr)
}
