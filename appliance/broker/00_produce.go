package broker

import (
	"fmt"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produce validates and appends every partition's batch at once, then waits
// for their flush off the connection's reading goroutine. acks=0 gets no
// response; acks=1 and acks=-1 both wait for the local flush policy (a
// single node is its own in-sync set).
func (b *Broker) produce(req *kafkawire.Request, r *kmsg.ProduceRequest) kafkawire.Result {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	type pending struct {
		topic, part int // indexes into resp.Topics and its Partitions
		wait        func() error
	}
	var waits []pending
	for _, rt := range r.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		t, missing := b.lookup(r.Version, 13, rt.Topic, rt.TopicID)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			var wait func() error
			switch {
			case r.Acks != 0 && r.Acks != 1 && r.Acks != -1:
				sp.ErrorCode = codeInvalidRequiredAcks
			case t == nil:
				sp.ErrorCode = missing
			case rp.Partition < 0 || rp.Partition >= int32(len(t.parts)):
				sp.ErrorCode = codeUnknownTopicOrPart
			default:
				wait = b.produceTo(t, t.parts[rp.Partition], r, rp.Records, &sp)
			}
			if wait != nil {
				waits = append(waits, pending{len(resp.Topics), len(st.Partitions), wait})
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
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

// produceTo validates one partition's batch and appends it, filling sp. It
// returns the wait for durability when the batch was accepted.
func (b *Broker) produceTo(t *topic, p *partition, r *kmsg.ProduceRequest, raw []byte, sp *kmsg.ProduceResponseTopicPartition) func() error {
	fail := func(code int16, err error) func() error {
		sp.ErrorCode = code
		sp.ErrorMessage = errMessage(err)
		return nil
	}
	if g := b.cfg.ProduceGuard; g != nil {
		if err := g(); err != nil {
			return fail(codeStorageError, err)
		}
	}
	if len(raw) > t.cfg.maxMessageBytes {
		return fail(codeMessageTooLarge, fmt.Errorf("batch of %d bytes exceeds max.message.bytes %d of topic %s", len(raw), t.cfg.maxMessageBytes, t.meta.Name))
	}
	batch, err := record.Validate(raw, record.ValidateOptions{Records: b.cfg.ValidateRecords, MaxUncompressed: b.cfg.LogBase.MaxUncompressed})
	if err != nil {
		return fail(storageErrorCode(err), err)
	}
	if batch.IsTransactional() || r.TransactionID != nil {
		return fail(codeInvalidTxnState, fmt.Errorf("transactions are not supported by this broker"))
	}
	// The produce-stage plugins decide what is stored (nil: the batch as
	// sent; empty: nothing).
	var stored []byte
	if t.plugins != nil && t.cfg.plugins.produce.refs != nil {
		out, terr := b.runProduceTransforms(t, batch)
		if terr != nil {
			return fail(terr.code, terr.err)
		}
		switch {
		case out == nil && batch.ProducerID() < 0:
			stored = []byte{}
		case out == nil, &out[0] != &batch[0]:
			if batch.ProducerID() >= 0 {
				if out, err = forIdempotence(batch, out); err != nil {
					return fail(codeStorageError, fmt.Errorf("partition %s: %w", p.tp, err))
				}
			}
			stored = out
		}
	}
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
		kept := record.Batch(batch)
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
