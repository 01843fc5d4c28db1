package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) createPartitions(r *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var code int16
		var err error
		if len(rt.Assignment) > 0 {
			code, err = codeInvalidRequest, fmt.Errorf("manual replica assignment is not supported on a single node")
		} else {
			code, err = b.addPartitions(rt.Topic, rt.Count, r.ValidateOnly)
		}
		st.ErrorCode, st.ErrorMessage = code, errMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
