package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit handles OffsetCommit for classic groups, consumer (KIP-848)
// groups and standalone consumers (generation -1 on an empty group).
func (c *Coordinator) OffsetCommit(now time.Time, id RequestID, r *kmsg.OffsetCommitRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	// One error for every partition, or per-partition checks.
	groupErr := c.commitCheck(now, r)
	var records []Record
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		_, nparts, topicOK := c.topics.ByName(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case groupErr != nil:
				sp.ErrorCode = groupErr.Code
			case !topicOK || rp.Partition < 0 || rp.Partition >= nparts:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.Metadata != nil && len(*rp.Metadata) > c.cfg.MaxOffsetMetadataBytes:
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			default:
				g := c.groups[r.Group]
				e := offsetEntry{Offset: rp.Offset, LeaderEpoch: -1, Committed: now}
				if r.Version >= 6 {
					e.LeaderEpoch = rp.LeaderEpoch
				}
				if rp.Metadata != nil {
					e.Metadata = *rp.Metadata
				}
				tp := topicPartition{rt.Topic, rp.Partition}
				g.offsets[tp] = e
				records = append(records, offsetRecord(r.Group, tp, e))
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	out.Records = records
	out.reply(id, resp)
	return out
}

// commitCheck applies Kafka's fencing rules to a commit; nil admits it
// (creating the group for a standalone consumer).
func (c *Coordinator) commitCheck(now time.Time, r *kmsg.OffsetCommitRequest) *kerr.Error {
	if r.Group == "" {
		return kerr.InvalidGroupID
	}
	g, ok := c.groups[r.Group]
	if !ok {
		if r.Generation >= 0 {
			return kerr.IllegalGeneration
		}
		c.getOrCreate(r.Group, TypeClassic, now)
		return nil
	}
	switch {
	case g.classic != nil:
		cs := g.classic
		m := cs.members[r.MemberID]
		switch {
		case cs.state == StateDead:
			return kerr.CoordinatorNotAvailable
		case r.Generation < 0 && cs.state == StateEmpty:
			return nil // offsets stored for a standalone consumer or an admin
		case cs.state == StateCompletingRebalance:
			return kerr.RebalanceInProgress
		case m != nil && cs.fenced(m, r.InstanceID):
			return kerr.FencedInstanceID
		case m == nil:
			return kerr.UnknownMemberID
		case r.Generation != cs.generation:
			return kerr.IllegalGeneration
		}
		m.deadline = now.Add(m.sessionTimeout)
		return nil
	case g.consumer != nil:
		return c.consumerCommitCheck(g, r.MemberID, r.Generation, now)
	}
	return nil
}

// OffsetFetch handles OffsetFetch (v8+: several groups at once).
func (c *Coordinator) OffsetFetch(now time.Time, id RequestID, r *kmsg.OffsetFetchRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version < 8 {
		var topics []kmsg.OffsetFetchRequestGroupTopic
		for _, t := range r.Topics {
			topics = append(topics, kmsg.OffsetFetchRequestGroupTopic{Topic: t.Topic, Partitions: t.Partitions})
		}
		if r.Topics == nil {
			topics = nil
		}
		gr := c.fetchGroup(now, kmsg.OffsetFetchRequestGroup{Group: r.Group, Topics: topics, MemberEpoch: -1})
		resp.ErrorCode = gr.ErrorCode
		for _, t := range gr.Topics {
			rt := kmsg.OffsetFetchResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.OffsetFetchResponseTopicPartition{
					Partition: p.Partition, Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, ErrorCode: p.ErrorCode,
				})
			}
			resp.Topics = append(resp.Topics, rt)
		}
	} else {
		for _, rg := range r.Groups {
			resp.Groups = append(resp.Groups, c.fetchGroup(now, rg))
		}
	}
	out.reply(id, resp)
	return out
}

func (c *Coordinator) fetchGroup(now time.Time, rg kmsg.OffsetFetchRequestGroup) kmsg.OffsetFetchResponseGroup {
	gr := kmsg.OffsetFetchResponseGroup{Group: rg.Group}
	g, ok := c.groups[rg.Group]
	if ok && g.consumer != nil && rg.MemberID != nil {
		if err := c.consumerFetchCheck(g, *rg.MemberID, rg.MemberEpoch); err != nil {
			gr.ErrorCode = err.Code
			return gr
		}
	}
	if rg.Topics == nil {
		// All committed offsets of the group.
		if ok {
			byTopic := map[string][]int32{}
			var order []string
			for tp := range g.offsets {
				if _, seen := byTopic[tp.Topic]; !seen {
					order = append(order, tp.Topic)
				}
				byTopic[tp.Topic] = append(byTopic[tp.Topic], tp.Partition)
			}
			sortStrings(order)
			for _, t := range order {
				rg.Topics = append(rg.Topics, kmsg.OffsetFetchRequestGroupTopic{Topic: t, Partitions: sortInt32(byTopic[t])})
			}
		}
	}
	for _, t := range rg.Topics {
		rt := kmsg.OffsetFetchResponseGroupTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			rp := kmsg.OffsetFetchResponseGroupTopicPartition{Partition: p, Offset: -1, LeaderEpoch: -1}
			if ok {
				if e, has := g.offsets[topicPartition{t.Topic, p}]; has {
					md := e.Metadata
					rp.Offset, rp.LeaderEpoch, rp.Metadata = e.Offset, e.LeaderEpoch, &md
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		gr.Topics = append(gr.Topics, rt)
	}
	return gr
}

// OffsetDelete removes a group's committed offsets for partitions the
// group does not consume.
func (c *Coordinator) OffsetDelete(now time.Time, id RequestID, r *kmsg.OffsetDeleteRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	g, ok := c.groups[r.Group]
	if !ok {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		out.reply(id, resp)
		return out
	}
	subscribed := c.subscribedTopics(g)
	for _, rt := range r.Topics {
		st := kmsg.OffsetDeleteResponseTopic{Topic: rt.Topic}
		for _, rp := range rt.Partitions {
			sp := kmsg.OffsetDeleteResponseTopicPartition{Partition: rp.Partition}
			tp := topicPartition{rt.Topic, rp.Partition}
			switch {
			case subscribed[rt.Topic]:
				sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				if _, has := g.offsets[tp]; has {
					delete(g.offsets, tp)
					out.Records = append(out.Records, Record{Group: g.ID, Key: offsetKey(g.ID, tp)})
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	out.reply(id, resp)
	return out
}

// expireOffsets drops the offsets of a group that has been empty longer
// than OffsetsRetention (KIP-211), and forgets the group once nothing of it
// is left.
func (c *Coordinator) expireOffsets(g *Group, now time.Time) Output {
	var out Output
	if !g.isEmpty() || now.Sub(g.emptySince) < c.cfg.OffsetsRetention {
		return out
	}
	for tp, e := range g.offsets {
		if now.Sub(e.Committed) >= c.cfg.OffsetsRetention {
			delete(g.offsets, tp)
			out.Records = append(out.Records, Record{Group: g.ID, Key: offsetKey(g.ID, tp)})
		}
	}
	if len(g.offsets) == 0 {
		delete(c.groups, g.ID)
		out.Records = append(out.Records, Record{Group: g.ID, Key: groupKey(g.ID)})
	}
	return out
}

// subscribedTopics are the topics a group's members consume.
func (c *Coordinator) subscribedTopics(g *Group) map[string]bool {
	out := map[string]bool{}
	switch {
	case g.classic != nil:
		for _, m := range g.classic.members {
			for _, t := range consumerProtocolTopics(m.metadataFor(g.classic.protocol)) {
				out[t] = true
			}
		}
	case g.consumer != nil:
		for t := range g.consumer.subscribedNames(c.topics) {
			out[t] = true
		}
	}
	return out
}

// consumerProtocolTopics reads the topics of a "consumer" protocol
// subscription (its metadata format is shared by all Kafka clients).
func consumerProtocolTopics(meta []byte) []string {
	var s kmsg.ConsumerMemberMetadata
	if err := s.ReadFrom(meta); err != nil {
		return nil
	}
	return s.Topics
}
