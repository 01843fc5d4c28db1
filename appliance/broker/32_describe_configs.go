package broker

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerSynonyms maps topic configs to the broker settings that supply
// their defaults, by Kafka's broker config names.
var brokerSynonyms = map[string]string{
	"cleanup.policy":                 "log.cleanup.policy",
	"compression.type":               "compression.type",
	"delete.retention.ms":            "log.cleaner.delete.retention.ms",
	"index.interval.bytes":           "log.index.interval.bytes",
	"max.compaction.lag.ms":          "log.cleaner.max.compaction.lag.ms",
	"max.message.bytes":              "message.max.bytes",
	"message.timestamp.type":         "log.message.timestamp.type",
	"min.cleanable.dirty.ratio":      "log.cleaner.min.cleanable.ratio",
	"min.compaction.lag.ms":          "log.cleaner.min.compaction.lag.ms",
	"min.insync.replicas":            "min.insync.replicas",
	"preallocate":                    "log.preallocate",
	"retention.bytes":                "log.retention.bytes",
	"retention.ms":                   "log.retention.ms",
	"segment.bytes":                  "log.segment.bytes",
	"segment.index.bytes":            "log.index.size.max.bytes",
	"segment.ms":                     "log.roll.ms",
	"unclean.leader.election.enable": "unclean.leader.election.enable",
}

// configValue returns a topic config's effective value and where it came
// from: the topic's override, the broker's setting, or the built-in default.
func (b *Broker) configValue(name string, overrides map[string]string) (string, kmsg.ConfigSource) {
	if v, ok := overrides[name]; ok {
		return v, kmsg.ConfigSourceDynamicTopicConfig
	}
	if v, ok := b.cfg.TopicDefaults[name]; ok {
		return v, kmsg.ConfigSourceStaticBrokerConfig
	}
	return builtinTopicDefaults[name], kmsg.ConfigSourceDefaultConfig
}

// builtinTopicDefaults are Kafka's defaults, used when the node sets none.
var builtinTopicDefaults = map[string]string{
	"cleanup.policy":                 "delete",
	"compression.type":               "producer",
	"delete.retention.ms":            "86400000",
	"index.interval.bytes":           "4096",
	"max.compaction.lag.ms":          "9223372036854775807",
	"max.message.bytes":              "1048588",
	"message.timestamp.type":         "CreateTime",
	"min.cleanable.dirty.ratio":      "0.5",
	"min.compaction.lag.ms":          "0",
	"min.insync.replicas":            "1",
	"preallocate":                    "false",
	"retention.bytes":                "-1",
	"retention.ms":                   "604800000",
	"segment.bytes":                  "1073741824",
	"segment.index.bytes":            "10485760",
	"segment.ms":                     "604800000",
	"unclean.leader.election.enable": "false",

	// Eddy's plugin bindings: none by default.
	"plugin.partitioner":                  "",
	"plugin.partitioner.config":           "",
	"plugin.partitioner.on.error":         "reject",
	"plugin.partitioner.timeout.ms":       "50",
	"plugin.partitioner.memory.max.bytes": "33554432",
	"plugin.partitioner.trusted":          "false",
	"plugin.produce.transforms":           "",
	"plugin.produce.config":               "",
	"plugin.produce.on.error":             "reject",
	"plugin.produce.timeout.ms":           "100",
	"plugin.produce.memory.max.bytes":     "33554432",
	"plugin.produce.trusted":              "false",
	"plugin.cleanup":                      "",
	"plugin.cleanup.config":               "",
	"plugin.cleanup.timeout.ms":           "5000",
	"plugin.cleanup.memory.max.bytes":     "33554432",
	"plugin.cleanup.trusted":              "false",
	"plugin.cleanup.allow.unshipped":      "false",
	"plugin.cleanup.dry.run":              "false",
}

func (b *Broker) describeConfigs(r *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		want := func(name string) bool {
			if rr.ConfigNames == nil {
				return true
			}
			for _, n := range rr.ConfigNames {
				if n == name {
					return true
				}
			}
			return false
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t, ok := b.topic(rr.ResourceName)
			if !ok {
				sr.ErrorCode = codeUnknownTopicOrPart
				sr.ErrorMessage = errMessage(fmt.Errorf("topic %s does not exist", rr.ResourceName))
				break
			}
			for _, def := range topicConfigDefs {
				if !want(def.name) {
					continue
				}
				sr.Configs = append(sr.Configs, b.describeTopicConfig(r, def, t.meta.Configs))
			}
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(b.cfg.NodeID)) {
				sr.ErrorCode = codeInvalidRequest
				sr.ErrorMessage = errMessage(fmt.Errorf("broker %s is not this node (%d)", rr.ResourceName, b.cfg.NodeID))
				break
			}
			for _, c := range b.brokerConfigs() {
				if want(c.Name) {
					if !r.IncludeSynonyms {
						c.ConfigSynonyms = nil
					}
					if !r.IncludeDocumentation {
						c.Documentation = nil
					}
					sr.Configs = append(sr.Configs, c)
				}
			}
		default:
			sr.ErrorCode = codeInvalidRequest
			sr.ErrorMessage = errMessage(fmt.Errorf("resource type %v is not supported", rr.ResourceType))
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func (b *Broker) describeTopicConfig(r *kmsg.DescribeConfigsRequest, def configDef, overrides map[string]string) kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name = def.name
	v, src := b.configValue(def.name, overrides)
	c.Value, c.Source, c.ConfigType = &v, src, def.typ
	c.IsDefault = src == kmsg.ConfigSourceDefaultConfig
	if r.IncludeDocumentation {
		doc := def.doc
		c.Documentation = &doc
	}
	if r.IncludeSynonyms {
		if ov, ok := overrides[def.name]; ok {
			c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: def.name, Value: &ov, Source: kmsg.ConfigSourceDynamicTopicConfig})
		}
		if bv, ok := b.cfg.TopicDefaults[def.name]; ok {
			c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: brokerSynonyms[def.name], Value: &bv, Source: kmsg.ConfigSourceStaticBrokerConfig})
		}
		dv := builtinTopicDefaults[def.name]
		c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: brokerSynonyms[def.name], Value: &dv, Source: kmsg.ConfigSourceDefaultConfig})
	}
	return c
}

// brokerConfigs describes the node's settings under Kafka's names. They
// come from the node's configuration file and are read-only here.
func (b *Broker) brokerConfigs() []kmsg.DescribeConfigsResponseResourceConfig {
	vals := map[string]string{
		"broker.id":                  strconv.Itoa(int(b.cfg.NodeID)),
		"node.id":                    strconv.Itoa(int(b.cfg.NodeID)),
		"auto.create.topics.enable":  strconv.FormatBool(b.autoCreate.Load()),
		"num.partitions":             strconv.Itoa(int(b.cfg.DefaultPartitions)),
		"default.replication.factor": strconv.Itoa(int(b.cfg.DefaultReplicationFactor)),
		"log.dirs":                   b.store.Dir(),
	}
	for topicName, brokerName := range brokerSynonyms {
		v, _ := b.configValue(topicName, nil)
		vals[brokerName] = v
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, n := range names {
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		v := vals[n]
		c.Name, c.Value, c.ReadOnly = n, &v, true
		c.Source = kmsg.ConfigSourceStaticBrokerConfig
		doc := "set in eddy.toml"
		c.Documentation = &doc
		c.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{{Name: n, Value: &v, Source: kmsg.ConfigSourceStaticBrokerConfig}}
		out = append(out, c)
	}
	return out
}
