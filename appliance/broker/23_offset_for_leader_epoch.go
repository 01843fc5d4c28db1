package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offsetForLeaderEpoch answers where a leader epoch ends (KIP-101/279):
// a single node has only epoch 0, which ends at the log end.
func (b *Broker) offsetForLeaderEpoch(r *kmsg.OffsetForLeaderEpochRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			_, p, ok := b.partition(rt.Topic, rp.Partition)
			switch {
			case !ok:
				sp.ErrorCode = codeUnknownTopicOrPart
			case r.Version >= 2 && rp.CurrentLeaderEpoch > leaderEpoch:
				sp.ErrorCode = codeUnknownLeaderEpoch
			case rp.LeaderEpoch > leaderEpoch:
				// An epoch newer than any we know: undefined.
			default:
				sp.LeaderEpoch, sp.EndOffset = leaderEpoch, p.log.Offsets().LEO
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
