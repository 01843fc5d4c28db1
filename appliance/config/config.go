// Package config is the broker node's configuration: one Config struct, the
// TOML schema it is read from, the built-in defaults and their validation.
//
// The defaults live in default.toml, embedded in the binary, so a node runs
// with no file at all; the comment above each key there is its user
// documentation, shown by Explain. Values are applied in layers, each
// overriding the one before:
//
//	built-in < io-profile < file < env < flags
//
// and every leaf key remembers which layer set it (Source). Keys are dotted
// paths such as "flush.max_delay"; the environment spells them
// EDDY_FLUSH_MAX_DELAY (EnvKey). Validate reports every problem at once,
// each as "key: problem".
//
// The schema is the Config struct itself: Set, Get and Keys walk its toml
// struct tags by reflection, so adding a key means adding a field, its
// line in default.toml, and (if needed) a rule in Validate. Other tags on a
// field describe per-key rules:
//
//	enum:"a|b"       the allowed values of a string
//	min, max         bounds of a number, size or duration
//	forever:"true"   -1 is allowed and means forever / no limit
//	addr:"listen"    host:port to listen on ("advertise": to tell clients)
//	required:"true"  a string must not be empty
//	reload:"hot"     a running node applies a new value on SIGHUP
//
// A Config is a plain value: it is not safe for concurrent mutation. A node
// reloads by loading a new Config, comparing it with Diff, and swapping.
package config

import (
	_ "embed"
	"maps"
	"strconv"
	"strings"
)

//go:embed default.toml
var defaultTOML []byte

// Source says which layer set a key's value.
type Source int

// The layers, from lowest to highest precedence.
const (
	BuiltIn   Source = iota // the embedded default.toml
	IOProfile               // the io-profile derived from the host's disks
	File                    // the configuration file
	Env                     // an EDDY_* environment variable
	Flag                    // a command-line flag
)

// String returns the name used in Explain and WriteTOML ("built-in", "env").
func (s Source) String() string {
	switch s {
	case BuiltIn:
		return "built-in"
	case IOProfile:
		return "io-profile"
	case File:
		return "file"
	case Env:
		return "env"
	case Flag:
		return "flag"
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// Values of node.profile.
const (
	ProfileDev        = "dev"
	ProfileProduction = "production"
)

// Auto is the value a tunable key (one the disk tuner derives) accepts to
// keep the io-profile's value, or the built-in one without a profile.
const Auto = "auto"

// Values of topics.auto_create.
const (
	AutoCreateAuto  = "auto"
	AutoCreateTrue  = "true"
	AutoCreateFalse = "false"
)

// Config is the configuration of one broker node. Read the typed fields
// directly; change them through Set so the source is recorded.
type Config struct {
	Node      Node      `toml:"node"`
	Listeners Listeners `toml:"listeners"`
	Admin     Admin     `toml:"admin"`
	TLS       TLS       `toml:"tls"`
	Kafka     Kafka     `toml:"kafka"`
	Flush     Flush     `toml:"flush"`
	Topics    Topics    `toml:"topics"`
	Groups    Groups    `toml:"groups"`
	Log       Log       `toml:"log"`
	IO        IO        `toml:"io"`
	Disk      Disk      `toml:"disk"`
	Metrics   Metrics   `toml:"metrics"`
	Profiling Profiling `toml:"profiling"`
	Plugins   Plugins   `toml:"plugins"`
	Logging   Logging   `toml:"logging"`

	sources map[string]Source // key -> layer; absent means BuiltIn
	origins map[string]string // key -> where exactly, e.g. "env EDDY_DATA_DIR"
}

// Node is the [node] section.
type Node struct {
	ID      int32  `toml:"id" min:"0"`
	DataDir string `toml:"data_dir" required:"true"`
	Profile string `toml:"profile" enum:"dev|production"`
}

// Listeners is the [listeners.*] sections.
type Listeners struct {
	Kafka KafkaListener `toml:"kafka"`
	QUIC  QUICListener  `toml:"quic"`
}

// KafkaListener is the [listeners.kafka] section: Kafka over TCP.
type KafkaListener struct {
	Addr       string `toml:"addr" addr:"listen" required:"true"`
	Advertised string `toml:"advertised" addr:"advertise"`
}

// QUICListener is the [listeners.quic] section. An empty Addr disables it.
type QUICListener struct {
	Addr                string   `toml:"addr" addr:"listen"`
	Advertised          string   `toml:"advertised" addr:"advertise"`
	HandshakeTimeout    Duration `toml:"handshake_timeout" min:"1ms"`
	IdleTimeout         Duration `toml:"idle_timeout" min:"1ms"`
	Keepalive           Duration `toml:"keepalive" min:"0"`
	InitialStreamWindow Size     `toml:"initial_stream_window" min:"1"`
	MaxStreamWindow     Size     `toml:"max_stream_window" min:"1"`
	InitialConnWindow   Size     `toml:"initial_conn_window" min:"1"`
	MaxConnWindow       Size     `toml:"max_conn_window" min:"1"`
	MaxIncomingStreams  int64    `toml:"max_incoming_streams" min:"1"`
	ShutdownGrace       Duration `toml:"shutdown_grace" min:"0"`
}

// Admin is the [admin] section. An empty Addr disables the admin API.
type Admin struct {
	Addr string `toml:"addr" addr:"listen"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ on the admin
	// listener, for on-demand CPU, heap and goroutine profiles.
	Pprof bool `toml:"pprof"`
}

// TLS is the [tls] section. Empty files mean the node's local CA.
type TLS struct {
	CertFile string   `toml:"cert_file"`
	KeyFile  string   `toml:"key_file"`
	CAFile   string   `toml:"ca_file"`
	Hosts    []string `toml:"hosts"`
}

// Kafka is the [kafka] section: the Kafka protocol front end.
type Kafka struct {
	MaxFrameSize        Size   `toml:"max_frame_size" min:"1KiB" max:"2147483647"`
	MaxInflightPerConn  int    `toml:"max_inflight_per_conn" min:"1"`
	FetchMaxBytes       Size   `toml:"fetch_max_bytes" min:"1KiB" max:"2147483647"`
	MaxConnections      int    `toml:"max_connections" min:"0"`
	MaxConnectionsPerIP int    `toml:"max_connections_per_ip" min:"0"`
	ValidateRecords     bool   `toml:"validate_records"`
	ClusterID           string `toml:"cluster_id"`
}

// Flush is the [flush] section: group commit. All of it is reloadable.
type Flush struct {
	Mode            string   `toml:"mode" enum:"group|interval|os" reload:"hot"`
	MaxDelay        Duration `toml:"max_delay" min:"1ns" reload:"hot" auto:"true"`
	MaxBatchBytes   Size     `toml:"max_batch_bytes" min:"1" reload:"hot" auto:"true"`
	MaxInflight     int      `toml:"max_inflight" min:"1" reload:"hot" auto:"true"`
	SyncConcurrency int      `toml:"sync_concurrency" min:"1" reload:"hot" auto:"true"`
	// SyncFSMinPartitions is the number of partitions in one flush from
	// which they share one syncfs of the data filesystem; 0 never does.
	SyncFSMinPartitions int `toml:"syncfs_min_partitions" min:"0" reload:"hot"`
}

// Topics is the [topics] section: how topics are created.
type Topics struct {
	AutoCreate               string `toml:"auto_create" enum:"auto|true|false" reload:"hot"`
	DefaultPartitions        int32  `toml:"default_partitions" min:"1"`
	DefaultReplicationFactor int16  `toml:"default_replication_factor" min:"1"`
}

// Groups is the [groups] section: the consumer-group coordinator.
type Groups struct {
	InitialRebalanceDelay     Duration `toml:"initial_rebalance_delay" min:"0s"`
	MinSessionTimeout         Duration `toml:"min_session_timeout" min:"1ms"`
	MaxSessionTimeout         Duration `toml:"max_session_timeout" min:"1ms"`
	MaxSize                   int      `toml:"max_size" min:"0"`
	ConsumerSessionTimeout    Duration `toml:"consumer_session_timeout" min:"1ms"`
	ConsumerHeartbeatInterval Duration `toml:"consumer_heartbeat_interval" min:"1ms"`
	Assignor                  string   `toml:"assignor" enum:"uniform|range"`
	OffsetsRetention          Duration `toml:"offsets_retention" min:"1ms"`
	OffsetsTopicPartitions    int32    `toml:"offsets_topic_partitions" min:"1" max:"1000"`
	OffsetsSegmentBytes       Size     `toml:"offsets_segment_bytes" min:"75" max:"2147483647"`
}

// Log is the [log] section: defaults for topic configs and the log cleaner.
type Log struct {
	SegmentBytes           Size     `toml:"segment_bytes" min:"75" max:"2147483647" auto:"true"`
	SegmentMs              Duration `toml:"segment_ms" min:"1ms"`
	RetentionMs            Duration `toml:"retention_ms" min:"1ms" forever:"true"`
	RetentionBytes         Size     `toml:"retention_bytes" min:"1" forever:"true"`
	IndexIntervalBytes     Size     `toml:"index_interval_bytes" min:"0" max:"2147483647"`
	SegmentIndexBytes      Size     `toml:"segment_index_bytes" min:"12" max:"2147483647"`
	CleanupPolicy          string   `toml:"cleanup_policy" enum:"delete|compact|compact,delete"`
	MaxMessageBytes        Size     `toml:"max_message_bytes" min:"1" max:"2147483647"`
	MessageTimestampType   string   `toml:"message_timestamp_type" enum:"CreateTime|LogAppendTime"`
	PreallocateBytes       Size     `toml:"preallocate_bytes" min:"0" auto:"true"`
	VerifyReads            bool     `toml:"verify_reads"`
	RetentionCheckInterval Duration `toml:"retention_check_interval" min:"1ms" reload:"hot"`
	CleanerInterval        Duration `toml:"cleaner_interval" min:"1ms"`
	CleanerDedupeBuffer    Size     `toml:"cleaner_dedupe_buffer" min:"1024"`
	CleanerIOMaxBytes      Size     `toml:"cleaner_io_max_bytes_per_second" min:"0"`
}

// IO is the [io] section: how segment I/O suits the data disk. The disk
// tuner derives these; "auto" keeps its value.
type IO struct {
	ReadConcurrency  int    `toml:"read_concurrency" min:"1" max:"4096" auto:"true"`
	Fadvise          string `toml:"fadvise" enum:"drop-sealed|keep" auto:"true"`
	WriteBufferBytes Size   `toml:"write_buffer_bytes" min:"4KiB" max:"64MiB" auto:"true"`
	// WritebackBytes starts the disk writing appended data each time this
	// many bytes have been appended to a segment; 0 leaves the writing to
	// the flushes.
	WritebackBytes Size `toml:"writeback_bytes" min:"0" max:"1GiB"`
}

// Disk is the [disk] section: tuning to the data disk and protection from
// filling it.
type Disk struct {
	Tuning        string   `toml:"tuning" enum:"auto|off"`
	ProbeBudget   Duration `toml:"probe_budget" min:"1s" max:"5m"`
	HardWatermark int      `toml:"hard_watermark" min:"1" max:"100" reload:"hot"`
	SoftWatermark int      `toml:"soft_watermark" min:"1" max:"100" reload:"hot"`
	MinFreeBytes  Size     `toml:"min_free_bytes" min:"0" reload:"hot"`
	CheckInterval Duration `toml:"check_interval" min:"10ms" reload:"hot"`
}

// Metrics is the [metrics] section: what /metrics on the admin API
// exports beyond the broker's own metrics.
type Metrics struct {
	Host bool `toml:"host"`
}

// Profiling is the [profiling] section: continuous profiling to a
// Pyroscope server, off unless Server is set.
type Profiling struct {
	Server            string   `toml:"server"`
	Application       string   `toml:"application"`
	Site              string   `toml:"site"`
	Tags              []string `toml:"tags"`
	Types             []string `toml:"types"`
	UploadRate        Duration `toml:"upload_rate" min:"1s"`
	DisableGCRuns     bool     `toml:"disable_gc_runs"`
	BasicAuthUser     string   `toml:"basic_auth_user"`
	BasicAuthPassword string   `toml:"basic_auth_password"`
	TenantID          string   `toml:"tenant_id"`
}

// Plugins is the [plugins] section: the WebAssembly plugin host.
type Plugins struct {
	Enabled             bool   `toml:"enabled"`
	Engine              string `toml:"engine" enum:"compiler|interpreter"`
	MemoryMaxBytes      Size   `toml:"memory_max_bytes" min:"64KiB" max:"4GiB"`
	Instances           int    `toml:"instances" min:"0" max:"1024"`
	MaxCallsPerInstance int    `toml:"max_calls_per_instance" min:"1"`
}

// Logging is the [logging] section: the node's own logs.
type Logging struct {
	Level  string `toml:"level" enum:"debug|info|warn|error" reload:"hot"`
	Format string `toml:"format" enum:"auto|text|json" reload:"hot"`
}

// AutoCreateTopics resolves topics.auto_create: "auto" means on in the dev
// profile and off in production.
func (c *Config) AutoCreateTopics() bool {
	switch c.Topics.AutoCreate {
	case AutoCreateTrue:
		return true
	case AutoCreateAuto:
		return c.Node.Profile == ProfileDev
	}
	return false
}

// Clone returns a deep copy of c, sources included.
func (c *Config) Clone() *Config {
	d := *c
	d.TLS.Hosts = append([]string(nil), c.TLS.Hosts...)
	d.sources = maps.Clone(c.sources)
	d.origins = maps.Clone(c.origins)
	return &d
}

// Source returns the layer that set key; BuiltIn for keys never set and for
// unknown keys.
func (c *Config) Source(key string) Source { return c.sources[key] }

// origin returns where key's value came from in detail ("env
// EDDY_DATA_DIR", "file /etc/eddy/eddy.toml"), or the source's name.
func (c *Config) origin(key string) string {
	if o, ok := c.origins[key]; ok && o != "" {
		return o
	}
	return c.Source(key).String()
}

// record notes that key was set by src from origin.
func (c *Config) record(key string, src Source, origin string) {
	if c.sources == nil {
		c.sources = make(map[string]Source)
		c.origins = make(map[string]string)
	}
	c.sources[key] = src
	c.origins[key] = origin
}

// EnvKey returns the environment variable that sets key:
// "flush.max_delay" -> "EDDY_FLUSH_MAX_DELAY".
func EnvKey(key string) string {
	return "EDDY_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}
