package broker

import (
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const unknownAuthorizedOps = -2147483648

func (b *Broker) metadata(req *kafkawire.Request, r *kmsg.MetadataRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	host, port := b.advertised(req.Conn.Listener)
	resp.Brokers = []kmsg.MetadataResponseBroker{{NodeID: b.cfg.NodeID, Host: host, Port: port}}
	id := b.meta.ClusterID()
	resp.ClusterID = &id
	resp.ControllerID = b.cfg.NodeID
	resp.AuthorizedOperations = unknownAuthorizedOps

	// Which topics: all (nil list, or an empty one before v1), or the named
	// ones, creating missing ones when allowed.
	var names []string
	all := r.Topics == nil || (r.Version == 0 && len(r.Topics) == 0)
	if all {
		for _, mt := range b.meta.Topics() {
			names = append(names, mt.Name)
		}
	}
	autoCreate := b.autoCreate.Load() && (r.Version < 4 || r.AllowAutoTopicCreation)
	for _, rt := range r.Topics {
		if rt.Topic == nil {
			// v10+: by topic id.
			mt := kmsg.NewMetadataResponseTopic()
			mt.TopicID = rt.TopicID
			if t, ok := b.topicByID(rt.TopicID); ok {
				b.fillTopic(&mt, t)
			} else {
				mt.ErrorCode = codeUnknownTopicID
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		names = append(names, *rt.Topic)
	}
	for _, name := range names {
		mt := kmsg.NewMetadataResponseTopic()
		n := name
		mt.Topic = &n
		t, ok := b.topic(name)
		if !ok && autoCreate {
			if err := validTopicName(name); err != nil {
				mt.ErrorCode = codeInvalidTopic
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			code, _ := b.createTopic(name, b.cfg.DefaultPartitions, nil, false)
			if code == codeNone || code == codeTopicExists {
				t, ok = b.topic(name)
			}
		}
		if !ok {
			mt.ErrorCode = codeUnknownTopicOrPart
			if validTopicName(name) != nil {
				mt.ErrorCode = codeInvalidTopic
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		b.fillTopic(&mt, t)
		resp.Topics = append(resp.Topics, mt)
	}
	return resp
}

func (b *Broker) fillTopic(mt *kmsg.MetadataResponseTopic, t *topic) {
	name := t.meta.Name
	mt.Topic = &name
	mt.TopicID = t.meta.ID
	mt.IsInternal = t.meta.Internal
	mt.AuthorizedOperations = unknownAuthorizedOps
	for i := range t.parts {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = int32(i)
		p.Leader = b.cfg.NodeID
		p.LeaderEpoch = leaderEpoch
		p.Replicas = []int32{b.cfg.NodeID}
		p.ISR = []int32{b.cfg.NodeID}
		mt.Partitions = append(mt.Partitions, p)
	}
}
