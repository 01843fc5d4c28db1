package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) deleteTopics(r *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if r.Version < 6 {
		for _, n := range r.TopicNames {
			targets = append(targets, target{name: &n})
		}
	} else {
		for _, t := range r.Topics {
			targets = append(targets, target{name: t.Topic, id: t.TopicID})
		}
	}
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = tg.name, tg.id
		var t *topic
		var ok bool
		if tg.name != nil {
			t, ok = b.topic(*tg.name)
			if !ok {
				st.ErrorCode = codeUnknownTopicOrPart
			}
		} else {
			t, ok = b.topicByID(tg.id)
			if !ok {
				st.ErrorCode = codeUnknownTopicID
			}
		}
		if ok {
			name := t.meta.Name
			st.Topic, st.TopicID = &name, t.meta.ID
			if t.meta.Internal {
				st.ErrorCode, st.ErrorMessage = codeInvalidRequest, errMessage(fmt.Errorf("internal topic %s cannot be deleted", name))
			} else if err := b.deleteTopic(t); err != nil {
				st.ErrorCode, st.ErrorMessage = codeStorageError, errMessage(err)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
