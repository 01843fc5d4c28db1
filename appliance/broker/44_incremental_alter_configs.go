package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// incrementalAlterConfigs sets, deletes, appends to or subtracts from a
// topic's config overrides; list values (cleanup.policy) take append and
// subtract.
func (b *Broker) incrementalAlterConfigs(r *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		var code int16
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			code, err = b.incrementalTopic(rr, r.ValidateOnly)
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

func (b *Broker) incrementalTopic(rr kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) (int16, error) {
	t, ok := b.topic(rr.ResourceName)
	if !ok {
		return codeUnknownTopicOrPart, fmt.Errorf("topic %s does not exist", rr.ResourceName)
	}
	next := t.meta.Clone().Configs
	seen := map[string]bool{}
	for _, c := range rr.Configs {
		if seen[c.Name] {
			return codeInvalidRequest, fmt.Errorf("config %s is given twice", c.Name)
		}
		seen[c.Name] = true
		def, known := topicConfigByName[c.Name]
		if !known {
			return codeInvalidConfig, fmt.Errorf("%s: unknown topic config", c.Name)
		}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.Value == nil {
				return codeInvalidConfig, fmt.Errorf("%s: set needs a value", c.Name)
			}
			next[c.Name] = strings.TrimSpace(*c.Value)
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(next, c.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if def.typ != kmsg.ConfigTypeList {
				return codeInvalidConfig, fmt.Errorf("%s: append and subtract apply to list configs only", c.Name)
			}
			if c.Value == nil {
				return codeInvalidConfig, fmt.Errorf("%s: %v needs a value", c.Name, c.Op)
			}
			cur, _ := b.configValue(c.Name, next)
			items := strings.Split(cur, ",")
			for _, v := range strings.Split(*c.Value, ",") {
				v = strings.TrimSpace(v)
				i := slices.Index(items, v)
				if c.Op == kmsg.IncrementalAlterConfigOpAppend && i < 0 {
					items = append(items, v)
				}
				if c.Op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0 {
					items = slices.Delete(items, i, i+1)
				}
			}
			next[c.Name] = strings.Join(items, ",")
		default:
			return codeInvalidRequest, fmt.Errorf("%s: unknown operation %d", c.Name, c.Op)
		}
	}
	return b.setTopicConfigs(rr.ResourceName, next, validateOnly)
}
