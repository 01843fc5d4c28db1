// Package broker serves the Kafka protocol on top of Eddy's storage: one
// file per API key (00_produce.go, 01_fetch.go, ...), the topic and
// partition registry, idempotent-producer state and topic configs.
//
// Requests arrive through transport/kafkawire on the connection's reading
// goroutine; a produce appends to every partition it names at once, then
// waits for the group commit off that goroutine, so a connection keeps
// several produce requests in flight in one flush window.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddybroker/eddy/appliance/group"
	"github.com/eddybroker/eddy/appliance/metadata"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/plugins/host"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config configures a Broker.
type Config struct {
	NodeID int32
	// Listeners maps a listener name ("kafka", "quic") to the host:port
	// Metadata advertises to clients that arrived on it.
	Listeners                map[string]string
	AutoCreateTopics         bool
	DefaultPartitions        int32
	DefaultReplicationFactor int16
	// TopicDefaults are the broker-level defaults of topic configs, by
	// Kafka's names ("retention.ms", ...).
	TopicDefaults map[string]string
	// LogBase holds node-level storage settings every partition shares
	// (CRC checks on read, preallocation chunk, decompression bound).
	LogBase partlog.Config
	// ValidateRecords walks every record of produced batches.
	ValidateRecords bool
	// FetchMaxBytes bounds the record bytes of one Fetch response,
	// whatever the request asks (Kafka's fetch.max.bytes); 0 means
	// DefaultFetchMaxBytes.
	FetchMaxBytes int
	// ProducerIDExpiration forgets idle producers (Kafka's
	// producer.id.expiration.ms); default one day.
	ProducerIDExpiration time.Duration
	// Groups configures the consumer-group coordinator.
	Groups group.Config
	// OffsetsPartitions is the partition count of __consumer_offsets when
	// it is created; default 8.
	OffsetsPartitions int32
	// OffsetsSegmentBytes is segment.bytes of __consumer_offsets when it
	// is created; zero means 100 MiB.
	OffsetsSegmentBytes int64
	// ReadConcurrency bounds the partition reads fetches make at once (the
	// disk's io.read_concurrency); 0 means no bound.
	ReadConcurrency int
	// ProduceGuard, when set, is asked before every append: a non-nil
	// error refuses the batch with KAFKA_STORAGE_ERROR and that message
	// (the data disk above its watermark, for example).
	ProduceGuard func() error
	// Observer, if set, hears of produced and fetched data and of group
	// rebalances (metrics).
	Observer Observer
	// Plugins runs WebAssembly plugins; nil refuses plugin configs.
	Plugins *host.Host
	Now     func() time.Time
	Logger  *slog.Logger
}

// Observer hears what the broker serves.
type Observer interface {
	Produced(topic string, records, bytes int64)
	Fetched(topic string, records, bytes int64)
	GroupRebalance(protocol string)
}

// Broker serves Kafka requests for one node.
type Broker struct {
	cfg   Config
	store *storage.Store
	meta  metadata.Store
	log   *slog.Logger

	mu struct {
		sync.RWMutex
		topics map[string]*topic
		byID   map[[16]byte]*topic
	}
	notify struct {
		sync.Mutex
		ch chan struct{}
	}
	pids struct {
		sync.Mutex
		next, end int64
	}
	adminMu    sync.Mutex // serialises topic creation, deletion and config changes
	autoCreate atomic.Bool
	groups     *groupCoordinator
	reads      chan struct{} // ReadConcurrency tokens; nil: unbounded
	plugins    pluginRegistry
	inflight   struct {
		sync.Mutex
		next  uint64
		start map[uint64]time.Time // produce requests awaiting their flush
	}
}

type topic struct {
	meta    metadata.Topic
	cfg     topicConfig
	parts   []*partition
	plugins *boundPlugins // nil: no plugin stage
}

var _ kafkawire.Handler = (*Broker)(nil)

// New opens every partition the metadata names (creating missing logs,
// rebuilding producer state) and removes logs of topics that no longer
// exist.
func New(cfg Config, store *storage.Store, meta metadata.Store) (*Broker, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultPartitions <= 0 {
		cfg.DefaultPartitions = 1
	}
	if cfg.DefaultReplicationFactor <= 0 {
		cfg.DefaultReplicationFactor = 1
	}
	if cfg.ProducerIDExpiration <= 0 {
		cfg.ProducerIDExpiration = 24 * time.Hour
	}
	if cfg.LogBase.Name == "" && cfg.LogBase.SegmentBytes == 0 {
		cfg.LogBase = partlog.DefaultConfig("")
	}
	if cfg.Groups == (group.Config{}) {
		cfg.Groups = group.DefaultConfig()
	}
	if cfg.OffsetsPartitions <= 0 {
		cfg.OffsetsPartitions = 8
	}
	if cfg.OffsetsSegmentBytes <= 0 {
		cfg.OffsetsSegmentBytes = 100 << 20
	}
	b := &Broker{cfg: cfg, store: store, meta: meta, log: cfg.Logger}
	if cfg.ReadConcurrency > 0 {
		b.reads = make(chan struct{}, cfg.ReadConcurrency)
	}
	b.inflight.start = map[uint64]time.Time{}
	b.autoCreate.Store(cfg.AutoCreateTopics)
	b.mu.topics = map[string]*topic{}
	b.mu.byID = map[[16]byte]*topic{}
	b.notify.ch = make(chan struct{})
	for _, mt := range meta.Topics() {
		t, err := b.openTopic(mt)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.mu.topics[mt.Name] = t
		b.mu.byID[mt.ID] = t
	}
	for tp := range store.Logs() {
		t, ok := b.mu.topics[tp.Topic]
		if !ok || tp.Partition >= int32(len(t.parts)) {
			b.log.Warn("removing the log of a deleted topic", "partition", tp.String())
			if err := store.DeleteLog(tp); err != nil {
				b.Close()
				return nil, fmt.Errorf("remove orphan log %s: %w", tp, err)
			}
		}
	}
	if err := b.startGroups(); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.startPlugins(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// openTopic opens (creating as needed) the logs of a topic.
func (b *Broker) openTopic(mt metadata.Topic) (*topic, error) {
	tc, err := buildTopicConfig(mt.Name, b.cfg.LogBase, b.cfg.TopicDefaults, mt.Configs)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", mt.Name, err)
	}
	t := &topic{meta: mt, cfg: tc}
	for i := int32(0); i < mt.Partitions; i++ {
		p, err := b.openPartition(storage.TopicPartition{Topic: mt.Name, Partition: i}, tc)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, p)
	}
	return t, nil
}

// Close stops the group coordinator and writes producer-state snapshots.
// The store is closed by its owner.
func (b *Broker) Close() error {
	b.groups.close()
	b.mu.RLock()
	defer b.mu.RUnlock()
	var errs []error
	for _, t := range b.mu.topics {
		for _, p := range t.parts {
			if err := p.snapshot(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// SetAutoCreateTopics turns topic auto-creation on or off (a hot setting).
func (b *Broker) SetAutoCreateTopics(on bool) { b.autoCreate.Store(on) }

// wake tells long-polling fetches that some high watermark moved.
func (b *Broker) wake() {
	b.notify.Lock()
	close(b.notify.ch)
	b.notify.ch = make(chan struct{})
	b.notify.Unlock()
}

// changed returns a channel closed at the next high-watermark move.
func (b *Broker) changed() <-chan struct{} {
	b.notify.Lock()
	defer b.notify.Unlock()
	return b.notify.ch
}

func (b *Broker) topic(name string) (*topic, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t, ok := b.mu.topics[name]
	return t, ok
}

func (b *Broker) topicByID(id [16]byte) (*topic, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t, ok := b.mu.byID[id]
	return t, ok
}

// lookup finds a request's topic: by id from byIDVersion on (KIP-516), by
// name before. missing is the error code for a topic that is not there.
func (b *Broker) lookup(version, byIDVersion int16, name string, id [16]byte) (t *topic, missing int16) {
	var ok bool
	if version >= byIDVersion {
		t, ok = b.topicByID(id)
		if !ok {
			return nil, codeUnknownTopicID
		}
		return t, codeNone
	}
	if t, ok = b.topic(name); !ok {
		return nil, codeUnknownTopicOrPart
	}
	return t, codeNone
}

func (b *Broker) partition(name string, idx int32) (*topic, *partition, bool) {
	t, ok := b.topic(name)
	if !ok || idx < 0 || idx >= int32(len(t.parts)) {
		return t, nil, false
	}
	return t, t.parts[idx], true
}

// advertised returns the host and port clients of a listener should use.
func (b *Broker) advertised(listener string) (string, int32) {
	addr, ok := b.cfg.Listeners[listener]
	if !ok {
		for _, a := range b.cfg.Listeners {
			addr = a
			break
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.Atoi(port)
	return host, int32(p)
}

// allocateProducerID hands out producer ids from blocks reserved durably in
// the metadata store.
func (b *Broker) allocateProducerID() (int64, error) {
	b.pids.Lock()
	defer b.pids.Unlock()
	if b.pids.next >= b.pids.end {
		const block = 1000
		first, err := b.meta.AllocateProducerIDs(block)
		if err != nil {
			return 0, err
		}
		b.pids.next, b.pids.end = first, first+block
	}
	id := b.pids.next
	b.pids.next++
	return id, nil
}

// Supported implements kafkawire.Handler.
func (b *Broker) Supported(key, version int16) bool {
	r, ok := apiVersions[key]
	return ok && version >= r[0] && version <= r[1]
}

// Serve implements kafkawire.Handler.
func (b *Broker) Serve(req *kafkawire.Request) kafkawire.Result {
	switch body := req.Body.(type) {
	case *kmsg.ApiVersionsRequest:
		return now(b.apiVersions(req, body))
	case *kmsg.MetadataRequest:
		return now(b.metadata(req, body))
	case *kmsg.ProduceRequest:
		return b.produce(req, body)
	case *kmsg.FetchRequest:
		return b.fetch(req, body)
	case *kmsg.ListOffsetsRequest:
		return now(b.listOffsets(body))
	case *kmsg.OffsetForLeaderEpochRequest:
		return now(b.offsetForLeaderEpoch(body))
	case *kmsg.InitProducerIDRequest:
		return now(b.initProducerID(body))
	case *kmsg.CreateTopicsRequest:
		return now(b.createTopics(body))
	case *kmsg.DeleteTopicsRequest:
		return now(b.deleteTopics(body))
	case *kmsg.CreatePartitionsRequest:
		return now(b.createPartitions(body))
	case *kmsg.DeleteRecordsRequest:
		return now(b.deleteRecords(body))
	case *kmsg.DescribeConfigsRequest:
		return now(b.describeConfigs(body))
	case *kmsg.AlterConfigsRequest:
		return now(b.alterConfigs(body))
	case *kmsg.IncrementalAlterConfigsRequest:
		return now(b.incrementalAlterConfigs(body))
	case *kmsg.DescribeClusterRequest:
		return now(b.describeCluster(req, body))
	case *kmsg.FindCoordinatorRequest:
		return now(b.findCoordinator(req, body))
	case *kmsg.JoinGroupRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output {
			return b.groups.core.JoinGroup(t, id, clientInfo(req), body)
		})
	case *kmsg.SyncGroupRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.SyncGroup(t, id, body) })
	case *kmsg.HeartbeatRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.Heartbeat(t, id, body) })
	case *kmsg.LeaveGroupRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.LeaveGroup(t, id, body) })
	case *kmsg.OffsetCommitRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.OffsetCommit(t, id, body) })
	case *kmsg.OffsetFetchRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.OffsetFetch(t, id, body) })
	case *kmsg.DescribeGroupsRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.DescribeGroups(t, id, body) })
	case *kmsg.ListGroupsRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.ListGroups(t, id, body) })
	case *kmsg.DeleteGroupsRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.DeleteGroups(t, id, body) })
	case *kmsg.OffsetDeleteRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output { return b.groups.core.OffsetDelete(t, id, body) })
	case *kmsg.ConsumerGroupHeartbeatRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output {
			return b.groups.core.ConsumerGroupHeartbeat(t, id, clientInfo(req), body)
		})
	case *kmsg.ConsumerGroupDescribeRequest:
		return b.groups.call(req, func(t time.Time, id group.RequestID) group.Output {
			return b.groups.core.ConsumerGroupDescribe(t, id, body)
		})
	}
	// Supported() admitted it, so a case above must exist.
	b.log.Error("no handler for a supported request", "key", req.Key, "version", req.Version)
	return kafkawire.NoResponse
}

func now(r kmsg.Response) kafkawire.Result { return kafkawire.Result{Response: r} }

// clientInfo names the client behind a request, for group members.
func clientInfo(req *kafkawire.Request) group.ClientInfo {
	ci := group.ClientInfo{}
	if req.ClientID != nil {
		ci.ClientID = *req.ClientID
	}
	if req.Conn != nil && req.Conn.Remote != nil {
		if host, _, err := net.SplitHostPort(req.Conn.Remote.String()); err == nil {
			ci.ClientHost = "/" + host
		}
	}
	return ci
}
