// Package group is the consumer-group coordinator as a pure state machine:
// groups, members, generations, protocol selection, assignments and
// committed offsets, for the classic protocol (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup) and KIP-848 (ConsumerGroupHeartbeat, with
// broker-side assignors and incremental reconciliation).
//
// It does no I/O, starts no goroutine and never reads the clock: every
// call takes the current time, and timeouts fire when the driver calls
// Tick. A call returns an Output: replies to deliver (to the request that
// was just made, or to requests parked earlier, such as the JoinGroups a
// completed rebalance answers) and records to persist in __consumer_offsets.
// The driver must make the records durable before it delivers the replies
// of the same Output; Load replays persisted records on start.
package group

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group states, as Kafka names them for the classic protocol.
const (
	StateEmpty               = "Empty"
	StatePreparingRebalance  = "PreparingRebalance"
	StateCompletingRebalance = "CompletingRebalance"
	StateStable              = "Stable"
	StateDead                = "Dead"
)

// Config holds the coordinator's limits and timeouts (Kafka's group.*
// and offsets.* broker settings).
type Config struct {
	MinSessionTimeout      time.Duration // group.min.session.timeout.ms: 6s
	MaxSessionTimeout      time.Duration // group.max.session.timeout.ms: 30m
	InitialRebalanceDelay  time.Duration // group.initial.rebalance.delay.ms: 3s
	MaxGroupSize           int           // group.max.size: 0 means no limit
	MaxProtocolBytes       int           // largest protocol metadata or assignment: 1 MiB
	MaxOffsetMetadataBytes int           // offset.metadata.max.bytes: 4096
	OffsetsRetention       time.Duration // offsets.retention.minutes: 7 days
	// KIP-848 consumer groups.
	ConsumerSessionTimeout    time.Duration // group.consumer.session.timeout.ms: 45s
	ConsumerHeartbeatInterval time.Duration // group.consumer.heartbeat.interval.ms: 5s
	DefaultAssignor           string        // "uniform" or "range"
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		MinSessionTimeout:         6 * time.Second,
		MaxSessionTimeout:         30 * time.Minute,
		InitialRebalanceDelay:     3 * time.Second,
		MaxProtocolBytes:          1 << 20,
		MaxOffsetMetadataBytes:    4096,
		OffsetsRetention:          7 * 24 * time.Hour,
		ConsumerSessionTimeout:    45 * time.Second,
		ConsumerHeartbeatInterval: 5 * time.Second,
		DefaultAssignor:           "uniform",
	}
}

// RequestID names a request whose reply may come later.
type RequestID uint64

// Reply is a response to deliver to a request.
type Reply struct {
	To   RequestID
	Resp kmsg.Response
}

// Record is a key/value to append to __consumer_offsets (a nil Value is a
// tombstone). Group says which group it belongs to, for partitioning.
type Record struct {
	Group string
	Key   []byte
	Value []byte
}

// Output is what a call produced: records to persist first, then replies.
type Output struct {
	Replies []Reply
	Records []Record
}

func (o *Output) reply(to RequestID, r kmsg.Response) { o.Replies = append(o.Replies, Reply{to, r}) }

func (o *Output) merge(p Output) {
	o.Replies = append(o.Replies, p.Replies...)
	o.Records = append(o.Records, p.Records...)
}

// Topics is the coordinator's view of the cluster's topics.
type Topics interface {
	ByName(name string) (id [16]byte, partitions int32, ok bool)
	ByID(id [16]byte) (name string, partitions int32, ok bool)
	Names() []string
}

// Coordinator holds every group of this node.
type Coordinator struct {
	cfg    Config
	topics Topics
	groups map[string]*Group
	idSeq  uint64
	// rebalances counts new generations (classic) and group epochs
	// (consumer), for metrics.
	rebalances struct{ classic, consumer uint64 }
}

// Rebalances returns how many rebalances classic and consumer (KIP-848)
// groups have gone through.
func (c *Coordinator) Rebalances() (classic, consumer uint64) {
	return c.rebalances.classic, c.rebalances.consumer
}

// New returns an empty coordinator.
func New(cfg Config, topics Topics) *Coordinator {
	return &Coordinator{cfg: cfg, topics: topics, groups: map[string]*Group{}}
}

// Group is one group: classic or consumer (KIP-848), with its offsets.
type Group struct {
	ID      string
	Type    string // "classic" or "consumer"
	offsets map[topicPartition]offsetEntry
	// emptySince is when the group last became empty (offsets expire
	// OffsetsRetention after it).
	emptySince time.Time

	classic  *classicState
	consumer *consumerState
}

type topicPartition struct {
	Topic     string
	Partition int32
}

type offsetEntry struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	Committed   time.Time
}

// Group types.
const (
	TypeClassic  = "classic"
	TypeConsumer = "consumer"
)

func (c *Coordinator) getOrCreate(id, typ string, now time.Time) *Group {
	g, ok := c.groups[id]
	if !ok {
		g = &Group{ID: id, Type: typ, offsets: map[topicPartition]offsetEntry{}, emptySince: now}
		c.groups[id] = g
	}
	if g.Type == TypeClassic && g.classic == nil {
		g.classic = newClassic()
	}
	if g.Type == TypeConsumer && g.consumer == nil {
		g.consumer = newConsumer()
	}
	return g
}

// isEmpty reports whether the group has no members.
func (g *Group) isEmpty() bool {
	switch {
	case g.classic != nil:
		return len(g.classic.members) == 0
	case g.consumer != nil:
		return len(g.consumer.members) == 0
	}
	return true
}

// State returns the group's state name (classic names; consumer groups
// use the KIP-848 names in ConsumerGroupDescribe, and these in ListGroups).
func (g *Group) State() string {
	switch {
	case g.classic != nil:
		return g.classic.state
	case g.consumer != nil:
		return g.consumer.classicState()
	}
	return StateEmpty
}

// convert makes an empty group of the other type usable as typ.
func (g *Group) convert(typ string) bool {
	if g.Type == typ {
		return true
	}
	if !g.isEmpty() {
		return false
	}
	g.Type = typ
	g.classic, g.consumer = nil, nil
	if typ == TypeClassic {
		g.classic = newClassic()
	} else {
		g.consumer = newConsumer()
	}
	return true
}

// GroupIDs returns every group id, sorted.
func (c *Coordinator) GroupIDs() []string {
	ids := make([]string, 0, len(c.groups))
	for id := range c.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Tick fires every timeout due at now: session expiries, rebalance
// deadlines, the initial rebalance delay, offset retention.
func (c *Coordinator) Tick(now time.Time) Output {
	var out Output
	for _, id := range c.GroupIDs() {
		g := c.groups[id]
		if g.classic != nil {
			out.merge(c.tickClassic(g, now))
		}
		if g.consumer != nil {
			out.merge(c.tickConsumer(g, now))
		}
		out.merge(c.expireOffsets(g, now))
	}
	return out
}

// NextDeadline returns the earliest time Tick has work (zero when none).
func (c *Coordinator) NextDeadline() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, g := range c.groups {
		if g.classic != nil {
			consider(g.classic.nextDeadline())
		}
		if g.consumer != nil {
			consider(g.consumer.nextDeadline())
		}
		if len(g.offsets) > 0 && g.isEmpty() {
			consider(g.emptySince.Add(c.cfg.OffsetsRetention))
		}
	}
	return next
}
