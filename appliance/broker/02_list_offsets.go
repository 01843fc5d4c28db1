package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListOffsets special timestamps.
const (
	latestTimestamp   = -1
	earliestTimestamp = -2
	maxTimestamp      = -3
)

func (b *Broker) listOffsets(r *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Offset, sp.Timestamp, sp.LeaderEpoch = -1, -1, -1
			_, p, ok := b.partition(rt.Topic, rp.Partition)
			switch {
			case !ok:
				sp.ErrorCode = codeUnknownTopicOrPart
			case rp.CurrentLeaderEpoch > leaderEpoch:
				sp.ErrorCode = codeUnknownLeaderEpoch
			default:
				b.listOffset(p, rp.Timestamp, &sp)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) listOffset(p *partition, ts int64, sp *kmsg.ListOffsetsResponseTopicPartition) {
	off := p.log.Offsets()
	sp.LeaderEpoch = leaderEpoch
	switch {
	case ts == latestTimestamp:
		sp.Offset = off.HW // the last stable offset equals it: no transactions
	case ts == earliestTimestamp:
		sp.Offset = off.LogStart
	case ts == maxTimestamp:
		t, o, found, err := p.log.MaxTimestamp()
		switch {
		case err != nil:
			sp.ErrorCode = storageErrorCode(err)
		case found:
			sp.Offset, sp.Timestamp = o, t
		}
	case ts < 0:
		sp.ErrorCode = codeInvalidRequest
	default:
		o, rts, found, err := p.log.OffsetForTimestamp(ts)
		switch {
		case err != nil:
			sp.ErrorCode = storageErrorCode(err)
		case found:
			sp.Offset, sp.Timestamp = o, rts
		}
	}
}
