package broker

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicConfig is a topic's effective configuration, typed.
type topicConfig struct {
	log             partlog.Config
	maxMessageBytes int
	logAppendTime   bool
	cleanupPolicy   string
	minInsync       int
	plugins         topicPlugins
}

// configDef describes one topic config Eddy understands.
type configDef struct {
	name  string
	typ   kmsg.ConfigType
	doc   string
	apply func(v string, c *topicConfig) error
}

func parseLong(v string, min int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	if n < min {
		return 0, fmt.Errorf("%d is below the minimum %d", n, min)
	}
	return n, nil
}

func msDuration(n int64) time.Duration {
	if n < 0 {
		return -1
	}
	if n > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(n) * time.Millisecond
}

// topicConfigDefs are the topic configs: Kafka's, then Eddy's plugin
// bindings.
var topicConfigDefs = append(append([]configDef{}, kafkaConfigDefs...), pluginConfigDefs...)

// kafkaConfigDefs are the Kafka topic configs Eddy serves.
var kafkaConfigDefs = []configDef{
	{"cleanup.policy", kmsg.ConfigTypeList, "delete, compact, both, or plugin (the plugin.cleanup policy): what happens to old segments", func(v string, c *topicConfig) error {
		parts := strings.Split(strings.ReplaceAll(v, " ", ""), ",")
		sort.Strings(parts)
		switch strings.Join(parts, ",") {
		case "delete", "compact", "compact,delete", "plugin":
		default:
			return fmt.Errorf("%q: want delete, compact, compact,delete or plugin", v)
		}
		c.cleanupPolicy = strings.Join(parts, ",")
		return nil
	}},
	{"compression.type", kmsg.ConfigTypeString, "producer: batches are stored as the producer compressed them", func(v string, c *topicConfig) error {
		if v != "producer" {
			return fmt.Errorf("%q: only producer is supported; Eddy stores batches exactly as produced", v)
		}
		return nil
	}},
	{"delete.retention.ms", kmsg.ConfigTypeLong, "how long tombstones are kept on compacted topics", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 0)
		c.log.DeleteRetention = msDuration(n)
		return err
	}},
	{"index.interval.bytes", kmsg.ConfigTypeInt, "log bytes between offset index entries", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 0)
		if err == nil && n > math.MaxInt32 {
			err = fmt.Errorf("%d is above %d", n, math.MaxInt32)
		}
		c.log.IndexIntervalBytes = int(n)
		return err
	}},
	{"max.compaction.lag.ms", kmsg.ConfigTypeLong, "longest a record may stay uncompacted", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 1)
		if n == math.MaxInt64 {
			n = 0 // no limit
		}
		c.log.MaxCompactionLag = msDuration(n)
		return err
	}},
	{"max.message.bytes", kmsg.ConfigTypeInt, "largest record batch a producer may send", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 0)
		if err == nil && n > math.MaxInt32 {
			err = fmt.Errorf("%d is above %d", n, math.MaxInt32)
		}
		c.maxMessageBytes = int(n)
		return err
	}},
	{"message.timestamp.type", kmsg.ConfigTypeString, "CreateTime (the producer's) or LogAppendTime (the broker's)", func(v string, c *topicConfig) error {
		switch v {
		case "CreateTime":
			c.logAppendTime = false
		case "LogAppendTime":
			c.logAppendTime = true
		default:
			return fmt.Errorf("%q: want CreateTime or LogAppendTime", v)
		}
		return nil
	}},
	{"min.cleanable.dirty.ratio", kmsg.ConfigTypeDouble, "share of dirty bytes before the cleaner compacts a log", func(v string, c *topicConfig) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("%q: want a number between 0 and 1", v)
		}
		c.log.MinCleanableDirtyRatio = f
		return nil
	}},
	{"min.compaction.lag.ms", kmsg.ConfigTypeLong, "youngest a record may be to be compacted", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 0)
		c.log.MinCompactionLag = msDuration(n)
		return err
	}},
	{"min.insync.replicas", kmsg.ConfigTypeInt, "in-sync replicas an acks=all produce needs", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 1)
		c.minInsync = int(n)
		return err
	}},
	{"preallocate", kmsg.ConfigTypeBoolean, "reserve segment space ahead of appends", func(v string, c *topicConfig) error {
		switch v {
		case "true":
			if c.log.PreallocateBytes == 0 {
				c.log.PreallocateBytes = 64 << 20
			}
		case "false":
			c.log.PreallocateBytes = 0
		default:
			return fmt.Errorf("%q: want true or false", v)
		}
		return nil
	}},
	{"retention.bytes", kmsg.ConfigTypeLong, "size beyond which the oldest segments are deleted; -1 for no limit", func(v string, c *topicConfig) error {
		n, err := parseLong(v, -1)
		c.log.RetentionBytes = n
		return err
	}},
	{"retention.ms", kmsg.ConfigTypeLong, "age beyond which segments are deleted; -1 to keep forever", func(v string, c *topicConfig) error {
		n, err := parseLong(v, -1)
		c.log.RetentionMs = msDuration(n)
		return err
	}},
	{"segment.bytes", kmsg.ConfigTypeInt, "size at which a segment rolls", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 75)
		if err == nil && n > math.MaxInt32 {
			err = fmt.Errorf("%d is above %d", n, math.MaxInt32)
		}
		c.log.SegmentBytes = n
		return err
	}},
	{"segment.index.bytes", kmsg.ConfigTypeInt, "size of a segment's offset index; a full index rolls the segment", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 12)
		if err == nil && n > math.MaxInt32 {
			err = fmt.Errorf("%d is above %d", n, math.MaxInt32)
		}
		c.log.SegmentIndexBytes = int(n)
		return err
	}},
	{"segment.ms", kmsg.ConfigTypeLong, "age at which a segment rolls", func(v string, c *topicConfig) error {
		n, err := parseLong(v, 1)
		c.log.SegmentMs = msDuration(n)
		return err
	}},
	{"unclean.leader.election.enable", kmsg.ConfigTypeBoolean, "false: a partition waits for an in-sync replica rather than lose data", func(v string, c *topicConfig) error {
		if v != "false" {
			return fmt.Errorf("%q: only false is supported; Eddy never elects an out-of-sync leader", v)
		}
		return nil
	}},
}

var topicConfigByName = func() map[string]*configDef {
	m := map[string]*configDef{}
	for i := range topicConfigDefs {
		m[topicConfigDefs[i].name] = &topicConfigDefs[i]
	}
	return m
}()

// buildTopicConfig resolves a topic's effective config from the node's
// storage settings (base), the broker defaults and the topic's overrides,
// reporting every bad override.
func buildTopicConfig(name string, base partlog.Config, defaults, overrides map[string]string) (topicConfig, error) {
	c := topicConfig{log: base, cleanupPolicy: "delete", minInsync: 1, maxMessageBytes: 1048588}
	var errs []string
	for _, def := range topicConfigDefs {
		v, ok := overrides[def.name]
		if !ok {
			v, ok = defaults[def.name]
		}
		if !ok {
			continue
		}
		if err := def.apply(v, &c); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", def.name, err))
		}
	}
	for k := range overrides {
		if _, ok := topicConfigByName[k]; !ok {
			errs = append(errs, fmt.Sprintf("%s: unknown topic config", k))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return c, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	switch {
	case c.cleanupPolicy == "plugin" && c.plugins.cleanup.refs == nil:
		return c, fmt.Errorf("cleanup.policy: plugin needs plugin.cleanup to name the policy")
	case c.cleanupPolicy != "plugin" && c.plugins.cleanup.refs != nil:
		return c, fmt.Errorf("plugin.cleanup: applies only with cleanup.policy=plugin (it is %s)", c.cleanupPolicy)
	}
	// The cleaner runs for compaction and for a cleanup plugin.
	c.log.Compact = strings.Contains(c.cleanupPolicy, "compact") || c.cleanupPolicy == "plugin"
	if c.cleanupPolicy == "compact" || c.cleanupPolicy == "plugin" {
		// Compaction alone, or a cleanup plugin, never deletes segments
		// by age or size: the plugin sees retention.* and decides.
		c.log.RetentionMs, c.log.RetentionBytes = -1, -1
	}
	c.log.Name = name
	return c, nil
}
