package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

// stampHeader is the header e2e producers add to each record: the run's
// id, then the intended send time in Unix nanoseconds, both 8 bytes
// big-endian. Consumers take the latency from it and count only their
// run's records.
const stampHeader = "eddy-bench-sent"

// produceRun drives the producers of one run.
type produceRun struct {
	o        *benchOpts
	rec      *recorder
	pl       *payload
	runID    uint64    // non-zero: stamp records for e2e
	start    time.Time // first scheduled send
	deadline time.Time // zero with --records
	sent     atomic.Int64
}

func newProduceRun(o *benchOpts, rec *recorder, runID uint64) (*produceRun, error) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x65646479))
	pl, err := newPayload(o.payload, o.sizes.max(), rng)
	if err != nil {
		return nil, err
	}
	return &produceRun{o: o, rec: rec, pl: pl, runID: runID}, nil
}

// run sends with every client (one goroutine each) until the record count
// or the deadline is reached, then waits for every acknowledgement.
// Records fail (and count as errors) only when the broker refuses them
// or they are not acknowledged within --timeout; ctx only stops sending.
func (pr *produceRun) run(ctx context.Context, cls []*kgo.Client) error {
	o := pr.o
	pr.start = time.Now()
	if !o.recordsSet {
		pr.deadline = pr.start.Add(o.duration)
	}
	pr.rec.start(pr.start)
	var wg sync.WaitGroup
	for i, cl := range cls {
		n := int64(-1)
		if o.recordsSet {
			n = o.records / int64(len(cls))
			if int64(i) < o.records%int64(len(cls)) {
				n++
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr.produce(ctx, cl, i, n)
		}()
	}
	wg.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), o.timeout+5*time.Second)
	defer cancel()
	for i, cl := range cls {
		if err := cl.Flush(fctx); err != nil {
			return fmt.Errorf("producer %d: wait for acknowledgements: %w", i, err)
		}
	}
	return nil
}

// sending is one record in flight with what its acknowledgement needs.
// A producer reuses them once acknowledged (the client is done with a
// record when its promise runs), so a record sent allocates nothing of
// the tool's own: at hundreds of thousands of records a second the
// allocations showed as garbage collection in the producer's profile.
type sending struct {
	rec      kgo.Record
	key      []byte
	hdr      [1]kgo.RecordHeader
	stamp    [16]byte
	intended time.Time
	size     int
	promise  func(*kgo.Record, error)
}

// produce is producer idx's send loop: n records (-1: until the
// deadline), paced by --rate or as fast as the client takes them.
func (pr *produceRun) produce(ctx context.Context, cl *kgo.Client, idx int, n int64) {
	o := pr.o
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(idx)))
	var interval, phase float64 // nanoseconds
	paced := o.rate > 0
	if paced {
		interval = float64(time.Second) * float64(o.producers) / o.rate
		phase = interval * float64(idx) / float64(o.producers)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sendCtx := context.WithoutCancel(ctx)
	var free sync.Pool // of *sending, put back by their promises
	next := func() *sending {
		if s, ok := free.Get().(*sending); ok {
			return s
		}
		s := &sending{}
		s.promise = func(_ *kgo.Record, err error) {
			if err != nil {
				pr.rec.fail(fmt.Errorf("produce: %w", err))
			} else {
				lat := time.Since(s.intended)
				pr.rec.done(s.intended.Add(lat), lat, 1, s.size)
			}
			free.Put(s)
		}
		return s
	}
	for i := int64(0); n < 0 || i < n; i++ {
		var intended time.Time
		if paced {
			intended = pr.start.Add(time.Duration(phase + float64(i)*interval))
			if !pr.deadline.IsZero() && !intended.Before(pr.deadline) {
				return
			}
			if d := time.Until(intended); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		} else {
			// One read of the monotonic clock; time.Now reads the wall
			// clock too, and at hundreds of thousands of records a
			// second the reads show in the producer's profile.
			intended = pr.start.Add(time.Since(pr.start))
			if !pr.deadline.IsZero() && !intended.Before(pr.deadline) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		snd := next()
		snd.rec = kgo.Record{Value: pr.pl.value(o.sizes.next(rng), rng)}
		r := &snd.rec
		if o.keys > 0 {
			snd.key = strconv.AppendInt(append(snd.key[:0], "key-"...), int64(rng.IntN(o.keys)), 10)
			r.Key = snd.key
		}
		if pr.runID != 0 {
			binary.BigEndian.PutUint64(snd.stamp[:], pr.runID)
			binary.BigEndian.PutUint64(snd.stamp[8:], uint64(intended.UnixNano()))
			snd.hdr[0] = kgo.RecordHeader{Key: stampHeader, Value: snd.stamp[:]}
			r.Headers = snd.hdr[:]
		}
		// The record's timestamp is its scheduled send time (the client
		// would otherwise read the clock again for it).
		r.Timestamp = intended
		snd.intended, snd.size = intended, len(r.Key)+len(r.Value)
		cl.Produce(sendCtx, r, snd.promise)
		pr.sent.Add(1)
	}
}

// benchProduce runs `eddy bench produce`.
func benchProduce(ctx context.Context, cmd *cobra.Command, o *benchOpts, res *result) error {
	cls, err := o.clients(ctx, o.producers, "producer", o.producerOpts()...)
	if err != nil {
		return err
	}
	defer closeClients(cls)
	rec := newRecorder()
	pr, err := newProduceRun(o, rec, 0)
	if err != nil {
		return err
	}
	prog := startProgress(cmd.ErrOrStderr(), o.progressEnabled(), time.Now(), rec, nil)
	err = pr.run(ctx, cls)
	prog.close()
	res.Produce = rec.summary("send to acknowledgement")
	return err
}
