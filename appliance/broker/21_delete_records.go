package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// deleteRecords moves log starts forward (-1 means "to the high
// watermark") and deletes the segments left wholly below them.
func (b *Broker) deleteRecords(r *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			_, p, ok := b.partition(rt.Topic, rp.Partition)
			if !ok {
				sp.ErrorCode = codeUnknownTopicOrPart
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			off := rp.Offset
			if off == -1 {
				off = p.log.Offsets().HW
			}
			start, err := p.log.DeleteRecords(off)
			if err != nil {
				sp.ErrorCode = storageErrorCode(err)
			} else {
				sp.LowWatermark = start
				if _, err := p.log.EnforceRetention(b.cfg.Now().UnixMilli()); err != nil {
					b.log.Warn("deleting segments below the new log start failed; the next retention pass retries", "partition", p.tp.String(), "err", err)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
