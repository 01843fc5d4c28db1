package broker

import (
	"errors"
	"github.com/eddybroker/eddy/appliance/record"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetch reads whole batches below the high watermark. It answers at once
// when min_bytes are available or a partition has an error; otherwise it
// long-polls off the connection's reading goroutine until min_bytes arrive,
// max_wait passes or the connection ends. Fetch sessions are not kept: the
// response always carries session id 0, which clients treat as "full
// fetches only".
func (b *Broker) fetch(req *kafkawire.Request, r *kmsg.FetchRequest) kafkawire.Result {
	ch := b.changed()
	resp, n, full, failed := b.fetchOnce(r)
	wait := time.Duration(r.MaxWaitMillis) * time.Millisecond
	if failed || full || wait <= 0 || n >= int(r.MinBytes) {
		return kafkawire.Result{Response: resp}
	}
	return kafkawire.Result{Later: func() kmsg.Response {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			select {
			case <-ch:
			case <-timer.C:
				resp, _, _, _ := b.fetchOnce(r)
				return resp
			case <-req.Ctx.Done():
				return resp
			}
			ch = b.changed()
			if resp, n, full, failed = b.fetchOnce(r); failed || full || n >= int(r.MinBytes) {
				return resp
			}
		}
	}}
}

// DefaultFetchMaxBytes is the default bound on one Fetch response's
// record bytes, Kafka's fetch.max.bytes default (55 MiB).
const DefaultFetchMaxBytes = 55 << 20

func (b *Broker) fetchMaxBytes() int {
	if b.cfg.FetchMaxBytes > 0 {
		return b.cfg.FetchMaxBytes
	}
	return DefaultFetchMaxBytes
}

// fetchOnce reads every requested partition once. It returns the response,
// the record bytes in it, whether the response's size bound left out
// records that are there (so waiting for min_bytes is pointless: a
// min_bytes above the broker's bound is met by a full response), and
// whether any partition failed.
func (b *Broker) fetchOnce(r *kmsg.FetchRequest) (resp *kmsg.FetchResponse, total int, full, failed bool) {
	resp = r.ResponseKind().(*kmsg.FetchResponse)
	maxBytes := b.fetchMaxBytes()
	if r.Version >= 3 && r.MaxBytes > 0 {
		maxBytes = min(maxBytes, int(r.MaxBytes))
	}
	for _, rt := range r.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		t, missing := b.lookup(r.Version, 13, rt.Topic, rt.TopicID)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.RecordBatches = []byte{} // empty, not null: librdkafka rejects a null record set
			switch {
			case t == nil:
				sp.ErrorCode = missing
			case rp.Partition < 0 || rp.Partition >= int32(len(t.parts)):
				sp.ErrorCode = codeUnknownTopicOrPart
			case rp.CurrentLeaderEpoch > leaderEpoch:
				sp.ErrorCode = codeUnknownLeaderEpoch
			default:
				limit := min(int(rp.PartitionMaxBytes), maxBytes-total)
				bound := limit < int(rp.PartitionMaxBytes) // by the response's size
				first := total == 0
				if b.reads != nil {
					b.reads <- struct{}{}
				}
				res, err := t.parts[rp.Partition].log.Read(rp.FetchOffset, max(limit, 1), false)
				if b.reads != nil {
					<-b.reads
				}
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.HW, res.HW, res.LogStart
				switch {
				case err != nil:
					sp.ErrorCode = storageErrorCode(err)
					if !errors.Is(err, partlog.ErrOffsetOutOfRange) {
						b.log.Warn("fetch failed", "partition", t.parts[rp.Partition].tp.String(), "err", err)
					}
				case len(res.Data) > limit && !first:
					// Only the first partition with data may exceed the
					// limits (KIP-74); the client comes back for this one.
					full = full || bound
				case res.Data != nil:
					sp.RecordBatches = res.Data
					total += len(res.Data)
					full = full || (bound && nextOffset(res.Data) < res.HW)
					if o := b.cfg.Observer; o != nil {
						o.Fetched(t.meta.Name, record.CountRecords(res.Data), int64(len(res.Data)))
					}
				}
			}
			if sp.ErrorCode != codeNone {
				failed = true
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, full, failed
}

// nextOffset is the offset after the last batch of data (whole batches).
func nextOffset(data []byte) int64 {
	var next int64
	for len(data) >= record.HeaderSize {
		b := record.Batch(data)
		next = b.LastOffset() + 1
		if b.Size() < record.HeaderSize {
			break
		}
		data = data[min(b.Size(), len(data)):]
	}
	return next
}
