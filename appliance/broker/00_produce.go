package broker

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produce validates every partition's batch (and runs its topic's
// produce transforms), appends them in the request's order, then waits for
// their flush, all off the connection's reading goroutine (a Staged
// result). acks=0 gets no response; acks=1 and acks=-1 both wait for the
// local flush policy (a single node is its own in-sync set).
func (b *Broker) produce(req *kafkawire.Request, r *kmsg.ProduceRequest) kafkawire.Result {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	var jobs []produceJob
	size := 0
	for _, rt := range r.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		t, missing := b.lookup(r.Version, 13, rt.Topic, rt.TopicID)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			switch {
			case r.Acks != 0 && r.Acks != 1 && r.Acks != -1:
				sp.ErrorCode = codeInvalidRequiredAcks
			case t == nil:
				sp.ErrorCode = missing
			case rp.Partition < 0 || rp.Partition >= int32(len(t.parts)):
				sp.ErrorCode = codeUnknownTopicOrPart
			default:
				jobs = append(jobs, produceJob{t: t, p: t.parts[rp.Partition], raw: rp.Records, topic: len(resp.Topics), part: len(st.Partitions)})
				size += len(rp.Records)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	// Checking batches (CRCs, records, decompression) and running
	// transforms touch nothing shared: they run while the connection reads
	// the requests behind this one, and a large request's partitions are
	// spread over the cores. Appends then follow the requests' order.
	prepare := func() {
		one := func(i int) { b.prepareProduce(&jobs[i], r) }
		if len(jobs) > 1 && size >= parallelProduceBytes {
			parallel(len(jobs), one)
			return
		}
		for i := range jobs {
			one(i)
		}
	}
	return kafkawire.Result{Staged: &kafkawire.Staged{Prepare: prepare, Commit: func() kafkawire.Result {
		return b.commitProduce(r, resp, jobs)
	}}}
}

// commitProduce appends a request's prepared batches in order and returns
// the wait for their flush.
func (b *Broker) commitProduce(r *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, jobs []produceJob) kafkawire.Result {
	type pending struct {
		topic, part int // indexes into resp.Topics and its Partitions
		wait        func() error
	}
	var waits []pending
	for i := range jobs {
		j := &jobs[i]
		sp := &resp.Topics[j.topic].Partitions[j.part]
		if wait := b.appendProduce(j, sp); wait != nil {
			waits = append(waits, pending{j.topic, j.part, wait})
		}
	}
	if r.Acks == 0 {
		return kafkawire.NoResponse
	}
	if len(waits) == 0 {
		return kafkawire.Result{Response: resp}
	}
	id := b.trackProduce()
	return kafkawire.Result{Later: func() kmsg.Response {
		defer b.untrackProduce(id)
		for _, w := range waits {
			if err := w.wait(); err != nil {
				sp := &resp.Topics[w.topic].Partitions[w.part]
				sp.ErrorCode = storageErrorCode(err)
				sp.ErrorMessage = errMessage(err)
				sp.BaseOffset = -1
			}
		}
		return resp
	}}
}

// parallelProduceBytes is the request size from which its partitions'
// batches are checked and transformed in parallel: below it, starting
// goroutines costs more than it saves.
const parallelProduceBytes = 64 << 10

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines, the caller's
// among them, and returns when every call has.
func parallel(n int, fn func(i int)) {
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			fn(i)
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// produceJob is one partition's batch of a produce request.
type produceJob struct {
	t           *topic
	p           *partition
	raw         []byte
	topic, part int // indexes into the response

	// Set by prepareProduce.
	batch   record.Batch
	stored  []byte // what the transforms leave to store; nil: the batch
	release func() // recycles stored once appended; may be nil
	code    int16  // refused: the error code and why
	err     error
}

// prepareProduce checks one partition's batch and runs its topic's produce
// transforms. It reads only the job's batch and topic, so the jobs of a
// request may be prepared in parallel.
func (b *Broker) prepareProduce(j *produceJob, r *kmsg.ProduceRequest) {
	t, raw := j.t, j.raw
	if len(raw) > t.cfg.maxMessageBytes {
		j.code, j.err = codeMessageTooLarge, fmt.Errorf("batch of %d bytes exceeds max.message.bytes %d of topic %s", len(raw), t.cfg.maxMessageBytes, t.meta.Name)
		return
	}
	batch, err := record.Validate(raw, record.ValidateOptions{Records: b.cfg.ValidateRecords, MaxUncompressed: b.cfg.LogBase.MaxUncompressed})
	if err != nil {
		j.code, j.err = storageErrorCode(err), err
		return
	}
	if batch.IsTransactional() || r.TransactionID != nil {
		j.code, j.err = codeInvalidTxnState, fmt.Errorf("transactions are not supported by this broker")
		return
	}
	j.batch = batch
	// The produce-stage plugins decide what is stored (nil: the batch as
	// sent; empty: nothing).
	if t.plugins != nil && t.cfg.plugins.produce.refs != nil {
		out, release, terr := b.runProduceTransforms(t, batch)
		j.release = release
		if terr != nil {
			j.code, j.err = terr.code, terr.err
			return
		}
		switch {
		case out == nil && batch.ProducerID() < 0:
			j.stored = []byte{}
		case out == nil, &out[0] != &batch[0]:
			if batch.ProducerID() >= 0 {
				if out, err = forIdempotence(batch, out); err != nil {
					j.code, j.err = codeStorageError, fmt.Errorf("partition %s: %w", j.p.tp, err)
					return
				}
			}
			j.stored = out
		}
	}
}

// appendProduce appends a prepared batch, filling sp. It returns the wait
// for durability when the batch was accepted.
func (b *Broker) appendProduce(j *produceJob, sp *kmsg.ProduceResponseTopicPartition) func() error {
	fail := func(code int16, err error) func() error {
		sp.ErrorCode = code
		sp.ErrorMessage = errMessage(err)
		return nil
	}
	if j.release != nil {
		defer j.release()
	}
	if g := b.cfg.ProduceGuard; g != nil {
		if err := g(); err != nil {
			return fail(codeStorageError, err)
		}
	}
	if j.err != nil {
		return fail(j.code, j.err)
	}
	t, p, batch, stored := j.t, j.p, j.batch, j.stored
	appendTime := int64(-1)
	if t.cfg.logAppendTime {
		appendTime = b.cfg.Now().UnixMilli()
		setLogAppendTime(batch, appendTime)
		if len(stored) > 0 {
			setLogAppendTime(stored, appendTime)
		}
	}
	out := p.append(batch, stored)
	if out.err != nil {
		return fail(out.code, fmt.Errorf("partition %s: %w", p.tp, out.err))
	}
	sp.BaseOffset, sp.LogStartOffset, sp.LogAppendTime = out.base, out.logStart, appendTime
	if o := b.cfg.Observer; o != nil {
		kept := batch
		if stored != nil {
			kept = stored
		}
		if len(kept) > 0 {
			o.Produced(t.meta.Name, int64(kept.RecordCount()), int64(len(kept)))
		}
	}
	return out.wait
}

// trackProduce notes a produce request waiting for its flush, for Stalled.
func (b *Broker) trackProduce() uint64 {
	b.inflight.Lock()
	defer b.inflight.Unlock()
	b.inflight.next++
	b.inflight.start[b.inflight.next] = time.Now()
	return b.inflight.next
}

func (b *Broker) untrackProduce(id uint64) {
	b.inflight.Lock()
	defer b.inflight.Unlock()
	delete(b.inflight.start, id)
}

// Stalled reports a produce request that has waited longer than limit for
// its append to become durable: the append path is not making progress.
func (b *Broker) Stalled(limit time.Duration) error {
	now := time.Now()
	b.inflight.Lock()
	defer b.inflight.Unlock()
	for _, start := range b.inflight.start {
		if d := now.Sub(start); d > limit {
			return fmt.Errorf("a produce request has waited %s for its append", d.Round(time.Millisecond))
		}
	}
	return nil
}

// setLogAppendTime stamps the broker's time on a batch (attribute bit 3 and
// maxTimestamp, both covered by the CRC, which is recomputed).
func setLogAppendTime(batch record.Batch, ms int64) {
	attrs := uint16(batch.Attributes()) | record.AttrLogAppendTime
	batch[21], batch[22] = byte(attrs>>8), byte(attrs)
	for i := 0; i < 8; i++ {
		batch[35+i] = byte(uint64(ms) >> (56 - 8*i))
	}
	batch.UpdateCRC()
}
