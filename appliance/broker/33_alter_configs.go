package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// errBrokerConfigsReadOnly explains why broker resources cannot be altered.
var errBrokerConfigsReadOnly = fmt.Errorf("broker settings come from eddy.toml (see `eddy config explain`); they cannot be altered over the Kafka protocol")

// alterConfigs replaces a topic's whole override set (the legacy API).
func (b *Broker) alterConfigs(r *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		var code int16
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			names := make([]string, len(rr.Configs))
			values := make([]*string, len(rr.Configs))
			for i, c := range rr.Configs {
				names[i], values[i] = c.Name, c.Value
			}
			var m map[string]string
			if m, err = configsOf(names, values); err != nil {
				code = codeInvalidConfig
			} else {
				code, err = b.setTopicConfigs(rr.ResourceName, m, r.ValidateOnly)
			}
		case kmsg.ConfigResourceTypeBroker:
			code, err = codeInvalidRequest, errBrokerConfigsReadOnly
		default:
			code, err = codeInvalidRequest, fmt.Errorf("resource type %v is not supported", rr.ResourceType)
		}
		sr.ErrorCode, sr.ErrorMessage = code, errMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}
