package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) createTopics(r *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range r.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		code, err := b.createOne(rt, seen[rt.Topic] > 1, r.ValidateOnly)
		st.ErrorCode, st.ErrorMessage = code, errMessage(err)
		if code == codeNone {
			if t, ok := b.topic(rt.Topic); ok {
				st.TopicID = t.meta.ID
				st.NumPartitions = int32(len(t.parts))
				st.ReplicationFactor = 1
				st.Configs = b.createTopicConfigs(t.meta.Configs)
			} else if r.ValidateOnly {
				st.NumPartitions, st.ReplicationFactor = b.partitionsOrDefault(rt.NumPartitions), 1
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) partitionsOrDefault(n int32) int32 {
	if n == -1 {
		return b.cfg.DefaultPartitions
	}
	return n
}

func (b *Broker) createOne(rt kmsg.CreateTopicsRequestTopic, duplicate, validateOnly bool) (int16, error) {
	if duplicate {
		return codeInvalidRequest, fmt.Errorf("topic %s appears more than once in the request", rt.Topic)
	}
	if len(rt.ReplicaAssignment) > 0 {
		return codeInvalidRequest, fmt.Errorf("manual replica assignment is not supported on a single node")
	}
	if rf := rt.ReplicationFactor; rf != -1 && rf != 1 {
		return codeInvalidReplication, fmt.Errorf("replication factor %d is larger than the 1 available broker", rf)
	}
	names := make([]string, len(rt.Configs))
	values := make([]*string, len(rt.Configs))
	for i, c := range rt.Configs {
		names[i], values[i] = c.Name, c.Value
	}
	configs, err := configsOf(names, values)
	if err != nil {
		return codeInvalidConfig, err
	}
	return b.createTopic(rt.Topic, b.partitionsOrDefault(rt.NumPartitions), configs, validateOnly)
}

// createTopicConfigs lists a new topic's effective configs (v5+).
func (b *Broker) createTopicConfigs(overrides map[string]string) []kmsg.CreateTopicsResponseTopicConfig {
	var out []kmsg.CreateTopicsResponseTopicConfig
	for _, def := range topicConfigDefs {
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		c.Name = def.name
		v, src := b.configValue(def.name, overrides)
		c.Value, c.Source = &v, int8(src)
		out = append(out, c)
	}
	return out
}
