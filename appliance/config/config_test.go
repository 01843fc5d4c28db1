package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDefault(t *testing.T) {
	if _, err := builtin(); err != nil {
		t.Fatalf("embedded default.toml is broken:\n%v", err)
	}
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate:\n%v", err)
	}
	for _, key := range c.Keys() {
		if src := c.Source(key); src != BuiltIn {
			t.Errorf("Source(%s) = %v, want built-in", key, src)
		}
		if _, ok := c.Get(key); !ok {
			t.Errorf("Get(%s) reports an unknown key", key)
		}
	}
	// The typed fields hold the documented defaults (DESIGN.md §4).
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.id", c.Node.ID, int32(1)},
		{"node.data_dir", c.Node.DataDir, "./eddy-data"},
		{"node.profile", c.Node.Profile, ProfileDev},
		{"listeners.kafka.addr", c.Listeners.Kafka.Addr, "127.0.0.1:9092"},
		{"listeners.quic.addr", c.Listeners.QUIC.Addr, "127.0.0.1:9093"},
		{"listeners.quic.idle_timeout", c.Listeners.QUIC.IdleTimeout.D(), 60 * time.Second},
		{"listeners.quic.initial_stream_window", c.Listeners.QUIC.InitialStreamWindow, 512 * KiB},
		{"listeners.quic.max_incoming_streams", c.Listeners.QUIC.MaxIncomingStreams, int64(256)},
		{"admin.addr", c.Admin.Addr, "127.0.0.1:9644"},
		{"tls.hosts", len(c.TLS.Hosts), 0},
		{"kafka.max_frame_size", c.Kafka.MaxFrameSize, 100 * MiB},
		{"kafka.validate_records", c.Kafka.ValidateRecords, true},
		{"flush.mode", c.Flush.Mode, "group"},
		{"flush.max_delay", c.Flush.MaxDelay.D(), 2 * time.Millisecond},
		{"flush.max_batch_bytes", c.Flush.MaxBatchBytes, MiB},
		{"topics.auto_create", c.Topics.AutoCreate, AutoCreateAuto},
		{"topics.default_replication_factor", c.Topics.DefaultReplicationFactor, int16(1)},
		{"log.segment_bytes", c.Log.SegmentBytes, GiB},
		{"log.retention_ms", c.Log.RetentionMs.D(), 7 * 24 * time.Hour},
		{"log.retention_bytes", c.Log.RetentionBytes, NoLimit},
		{"log.cleanup_policy", c.Log.CleanupPolicy, "delete"},
		{"log.verify_reads", c.Log.VerifyReads, true},
		{"logging.level", c.Logging.Level, "info"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// Default returns a copy each time.
	c.Node.DataDir = "/elsewhere"
	c.TLS.Hosts = append(c.TLS.Hosts, "x")
	if d := Default(); d.Node.DataDir != "./eddy-data" || len(d.TLS.Hosts) != 0 {
		t.Errorf("Default() shares state between calls: %q %v", d.Node.DataDir, d.TLS.Hosts)
	}
}

// TestKeysMatchDefaultFile parses the embedded file on its own and checks
// that its leaves are exactly Keys(), in the same order, each documented.
func TestKeysMatchDefaultFile(t *testing.T) {
	var raw map[string]any
	md, err := toml.Decode(string(defaultTOML), &raw)
	if err != nil {
		t.Fatalf("default.toml: %v", err)
	}
	var leaves []string
	for _, k := range md.Keys() {
		if md.Type(k...) != "Hash" {
			leaves = append(leaves, strings.Join(k, "."))
		}
	}
	keys := Default().Keys()
	if !slices.Equal(leaves, keys) {
		t.Errorf("default.toml leaves and Keys() differ\nfile: %v\nkeys: %v", leaves, keys)
	}
	if len(keys) < 40 {
		t.Errorf("only %d keys; the schema lost some", len(keys))
	}
	for _, key := range keys {
		if doc := Doc(key); len(doc) < 10 {
			t.Errorf("%s has no comment line in default.toml (got %q)", key, doc)
		}
	}
}

func TestSetGet(t *testing.T) {
	tests := []struct {
		key, value string
		want       string // canonical form after Set; "" = same as value
		wantErr    string
	}{
		{key: "node.id", value: "7"},
		{key: "node.id", value: "-1", wantErr: "node.id: -1 must be zero or more"},
		{key: "node.id", value: "3000000000", wantErr: "out of range"},
		{key: "node.id", value: "one", wantErr: `"one" is not an integer`},
		{key: "node.profile", value: "production"},
		{key: "node.profile", value: "staging", wantErr: `"staging" is not one of dev, production`},
		{key: "node.data_dir", value: "", wantErr: "node.data_dir: must not be empty"},
		{key: "flush.max_delay", value: "5ms"},
		{key: "flush.max_delay", value: "2xs", wantErr: `flush.max_delay: "2xs" is not a duration`},
		{key: "flush.max_delay", value: "0s", wantErr: "0s must be positive"},
		{key: "flush.max_delay", value: "-1", wantErr: "-1 (forever) is not allowed"},
		{key: "flush.max_batch_bytes", value: "4194304", want: "4MiB"},
		{key: "flush.max_batch_bytes", value: "-1", wantErr: "-1 (no limit) is not allowed"},
		{key: "log.retention_ms", value: "-1", want: "forever"},
		{key: "log.retention_ms", value: "forever"},
		{key: "log.retention_ms", value: "168h", want: "7d"},
		{key: "log.retention_bytes", value: "-1"},
		{key: "log.retention_bytes", value: "0", wantErr: "0 must be -1 (no limit) or positive"},
		{key: "log.segment_bytes", value: "74", wantErr: "74B must be at least 75B"},
		{key: "log.segment_bytes", value: "2GiB", wantErr: "2GiB is above the maximum 2147483647B"},
		{key: "log.cleanup_policy", value: "compact,delete"},
		{key: "log.cleanup_policy", value: "purge", wantErr: "is not one of"},
		{key: "kafka.validate_records", value: "false"},
		{key: "kafka.validate_records", value: "maybe", wantErr: `"maybe" is not true or false`},
		{key: "tls.hosts", value: "broker.local, 10.0.0.5", want: "broker.local,10.0.0.5"},
		{key: "listeners.kafka.addr", value: "0.0.0.0:9092"},
		{key: "listeners.kafka.addr", value: "localhost", wantErr: `"localhost" is not host:port`},
		{key: "listeners.kafka.addr", value: "host:kafka", wantErr: "want a number"},
		{key: "listeners.kafka.advertised", value: "broker1.example:9092"},
		{key: "listeners.kafka.advertised", value: "0.0.0.0:9092", wantErr: "no concrete host"},
		{key: "listeners.kafka.advertised", value: "[::]:9092", wantErr: "no concrete host"},
		{key: "listeners.kafka.advertised", value: "broker1:0", wantErr: "port 0"},
		{key: "listeners.quic.addr", value: ""},
		{key: "topics.auto_create", value: "true"},
		{key: "flush.max_dealy", value: "1ms", wantErr: "flush.max_dealy: unknown key; did you mean flush.max_delay?"},
		{key: "flush", value: "1ms", wantErr: "flush: is a section"},
		{key: "nope", value: "1", wantErr: "nope: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			c := Default()
			before, _ := c.Get(tt.key)
			err := c.Set(tt.key, tt.value, Flag)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Set = %v, want error containing %q", err, tt.wantErr)
				}
				var ke *KeyError
				if !errors.As(err, &ke) || ke.Key != tt.key {
					t.Errorf("error %v is not a KeyError for %s", err, tt.key)
				}
				if after, _ := c.Get(tt.key); after != before || c.Source(tt.key) != BuiltIn {
					t.Errorf("failed Set changed %s: %q -> %q (source %v)", tt.key, before, after, c.Source(tt.key))
				}
				return
			}
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.value
			}
			if got, ok := c.Get(tt.key); !ok || got != want {
				t.Errorf("Get = %q, %v; want %q", got, ok, want)
			}
			if c.Source(tt.key) != Flag {
				t.Errorf("Source = %v, want flag", c.Source(tt.key))
			}
		})
	}
}

func TestSetTypedFields(t *testing.T) {
	c := Default()
	for key, value := range map[string]string{
		"listeners.quic.idle_timeout": "2m",
		"flush.max_batch_bytes":       "8MiB",
		"topics.default_partitions":   "12",
		"tls.hosts":                   "a.example,b.example",
	} {
		if err := c.Set(key, value, Env); err != nil {
			t.Fatal(err)
		}
	}
	if c.Listeners.QUIC.IdleTimeout.D() != 2*time.Minute || c.Flush.MaxBatchBytes != 8*MiB ||
		c.Topics.DefaultPartitions != 12 || !slices.Equal(c.TLS.Hosts, []string{"a.example", "b.example"}) {
		t.Errorf("typed fields not updated: %v %v %v %v", c.Listeners.QUIC.IdleTimeout, c.Flush.MaxBatchBytes,
			c.Topics.DefaultPartitions, c.TLS.Hosts)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings, each must appear; nil means valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "windows reversed", mutate: func(c *Config) {
			c.Listeners.QUIC.InitialStreamWindow = 32 * MiB
			c.Listeners.QUIC.InitialConnWindow = 128 * MiB
		}, want: []string{
			"listeners.quic.max_stream_window: 16MiB is below listeners.quic.initial_stream_window (32MiB)",
			"listeners.quic.max_conn_window: 64MiB is below listeners.quic.initial_conn_window (128MiB)",
		}},
		{name: "zero delay and sizes", mutate: func(c *Config) {
			c.Flush.MaxDelay = 0
			c.Flush.MaxBatchBytes = 0
			c.Listeners.QUIC.InitialStreamWindow = 0
		}, want: []string{"flush.max_delay: 0s must be positive", "flush.max_batch_bytes: 0 must be positive",
			"listeners.quic.initial_stream_window: 0 must be positive"}},
		{name: "retention", mutate: func(c *Config) { c.Log.RetentionMs = 0 },
			want: []string{"log.retention_ms: 0s must be -1 (forever) or at least 1ms"}},
		{name: "retention forever", mutate: func(c *Config) { c.Log.RetentionMs = Forever; c.Log.RetentionBytes = NoLimit }},
		{name: "segment range", mutate: func(c *Config) { c.Log.SegmentBytes = 2 * GiB },
			want: []string{"log.segment_bytes: 2GiB is above the maximum"}},
		{name: "enums", mutate: func(c *Config) {
			c.Node.Profile = "prod"
			c.Logging.Level = "verbose"
			c.Log.CleanupPolicy = "delete,purge"
			c.Flush.Mode = ""
		}, want: []string{`node.profile: "prod" is not one of dev, production`, `logging.level: "verbose"`,
			`log.cleanup_policy: "delete,purge"`, "flush.mode: must be one of group, interval, os"}},
		{name: "tls cert without key", mutate: func(c *Config) { c.TLS.CertFile = "node.pem" },
			want: []string{"tls.key_file: must be set when tls.cert_file is set"}},
		{name: "tls key without cert", mutate: func(c *Config) { c.TLS.KeyFile = "node.key" },
			want: []string{"tls.cert_file: must be set when tls.key_file is set"}},
		{name: "tls pair", mutate: func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "node.pem", "node.key" }},
		{name: "data dir", mutate: func(c *Config) { c.Node.DataDir = "" },
			want: []string{"node.data_dir: must not be empty"}},
		{name: "admin on kafka port", mutate: func(c *Config) { c.Admin.Addr = "127.0.0.1:9092" },
			want: []string{`admin.addr: "127.0.0.1:9092" takes the same TCP port as listeners.kafka.addr`}},
		{name: "admin wildcard on kafka port", mutate: func(c *Config) { c.Admin.Addr = ":9092" },
			want: []string{"admin.addr: "}},
		{name: "admin localhost on kafka port", mutate: func(c *Config) { c.Admin.Addr = "localhost:09092" },
			want: []string{"admin.addr: "}},
		{name: "admin same port other host", mutate: func(c *Config) { c.Admin.Addr = "10.0.0.1:9092" }},
		{name: "quic may share the kafka port number", mutate: func(c *Config) { c.Listeners.QUIC.Addr = "127.0.0.1:9092" }},
		{name: "ephemeral ports never clash", mutate: func(c *Config) {
			c.Listeners.Kafka.Addr = "127.0.0.1:0"
			c.Admin.Addr = "127.0.0.1:0"
		}},
		{name: "admin disabled", mutate: func(c *Config) { c.Admin.Addr = "" }},
		{name: "kafka listener required", mutate: func(c *Config) { c.Listeners.Kafka.Addr = "" },
			want: []string{"listeners.kafka.addr: must not be empty"}},
		{name: "bad addrs", mutate: func(c *Config) {
			c.Listeners.Kafka.Addr = "9092"
			c.Listeners.QUIC.Addr = "host:99999"
			c.Admin.Addr = "bad host:1"
		}, want: []string{`listeners.kafka.addr: "9092" is not host:port`, "listeners.quic.addr:", "admin.addr:"}},
		{name: "advertised wildcard", mutate: func(c *Config) { c.Listeners.QUIC.Advertised = "0.0.0.0:9093" },
			want: []string{"listeners.quic.advertised:", "no concrete host"}},
		{name: "advertised without quic", mutate: func(c *Config) {
			c.Listeners.QUIC.Addr = ""
			c.Listeners.QUIC.Advertised = "edge1.example:9093"
		}, want: []string{"listeners.quic.advertised: is set but the QUIC listener is disabled"}},
		{name: "keepalive not below idle", mutate: func(c *Config) { c.Listeners.QUIC.Keepalive = Duration(time.Minute) },
			want: []string{"listeners.quic.keepalive: 1m is not below listeners.quic.idle_timeout (1m)"}},
		{name: "keepalive off", mutate: func(c *Config) { c.Listeners.QUIC.Keepalive = 0 }},
		{name: "message above frame", mutate: func(c *Config) { c.Log.MaxMessageBytes = 200 * MiB },
			want: []string{"log.max_message_bytes: 200MiB is above kafka.max_frame_size (100MiB)"}},
		{name: "preallocate above segment", mutate: func(c *Config) {
			c.Log.SegmentBytes = 64 * MiB
			c.Set("log.preallocate_bytes", "128MiB", File)
		}, want: []string{"log.preallocate_bytes: 128MiB is above log.segment_bytes (64MiB)"}},
		{name: "derived preallocation above segment is clamped, not refused", mutate: func(c *Config) {
			c.Set("log.segment_bytes", "32MiB", File)
			c.Set("log.preallocate_bytes", "64MiB", IOProfile)
		}},
		{name: "watermarks", mutate: func(c *Config) { c.Disk.SoftWatermark, c.Disk.HardWatermark = 97, 95 },
			want: []string{"disk.soft_watermark: 97% is above disk.hard_watermark (95%)"}},
		{name: "profiling", mutate: func(c *Config) {
			c.Profiling.Server = "pyroscope:4040"
			c.Profiling.Tags = []string{"rack=3", "nonsense"}
			c.Profiling.Types = []string{"cpu", "heap"}
		}, want: []string{`profiling.server: "pyroscope:4040" is not an http(s) URL`, `profiling.tags: "nonsense" is not name=value`, `profiling.types: "heap" is not a profile type`}},
		{name: "counts", mutate: func(c *Config) {
			c.Node.ID = -3
			c.Topics.DefaultPartitions = 0
			c.Topics.DefaultReplicationFactor = 0
			c.Flush.MaxInflight = 0
			c.Listeners.QUIC.MaxIncomingStreams = 0
		}, want: []string{"node.id: -3 must be zero or more", "topics.default_partitions: 0 must be positive",
			"topics.default_replication_factor:", "flush.max_inflight:", "listeners.quic.max_incoming_streams:"}},
		{name: "cluster id", mutate: func(c *Config) { c.Kafka.ClusterID = "my cluster" },
			want: []string{"kafka.cluster_id:"}},
		{name: "empty host entry", mutate: func(c *Config) { c.TLS.Hosts = []string{"a", " "} },
			want: []string{"tls.hosts: has an empty entry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate passed, want problems")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// Every problem is a KeyError "key: problem", and exactly the
			// keys named in want have problems.
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("Validate error %T is not a joined error", err)
			}
			wantKeys := map[string]bool{}
			for _, w := range tt.want {
				if k, _, ok := strings.Cut(w, ":"); ok && schemaByKey[k] != nil {
					wantKeys[k] = true
				}
			}
			gotKeys := map[string]bool{}
			for _, e := range joined.Unwrap() {
				var ke *KeyError
				if !errors.As(e, &ke) || !strings.HasPrefix(e.Error(), ke.Key+": ") {
					t.Errorf("problem %q is not a \"key: problem\" KeyError", e)
					continue
				}
				gotKeys[ke.Key] = true
			}
			if !maps.Equal(gotKeys, wantKeys) {
				t.Errorf("problems with %v, want %v:\n%v", slices.Sorted(maps.Keys(gotKeys)), slices.Sorted(maps.Keys(wantKeys)), err)
			}
		})
	}
}

func TestValidateNamesOrigin(t *testing.T) {
	c := Default()
	if err := c.Set("listeners.quic.initial_stream_window", "32MiB", File); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "listeners.quic.max_stream_window: 16MiB is below") {
		t.Fatalf("Validate = %v", err)
	}
	// The max window is built-in, so no origin is added to its problem.
	if strings.Contains(err.Error(), "(file)") {
		t.Errorf("origin added to a built-in value: %v", err)
	}
	c = Default()
	c.Set("flush.max_delay", "5ms", Env)
	c.Flush.MaxDelay = 0 // changed behind Set's back: still reported, with where the key was last set
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "flush.max_delay: 0s must be positive (env)") {
		t.Errorf("Validate = %v", err)
	}
}

func TestAutoCreateTopics(t *testing.T) {
	tests := []struct {
		profile, auto string
		want          bool
	}{
		{ProfileDev, AutoCreateAuto, true},
		{ProfileProduction, AutoCreateAuto, false},
		{ProfileProduction, AutoCreateTrue, true},
		{ProfileDev, AutoCreateFalse, false},
	}
	for _, tt := range tests {
		c := Default()
		c.Node.Profile, c.Topics.AutoCreate = tt.profile, tt.auto
		if got := c.AutoCreateTopics(); got != tt.want {
			t.Errorf("profile %s, auto_create %s: AutoCreateTopics() = %v, want %v", tt.profile, tt.auto, got, tt.want)
		}
	}
}

func TestReloadable(t *testing.T) {
	hot := map[string]bool{
		"flush.mode": true, "flush.max_delay": true, "flush.max_batch_bytes": true,
		"flush.max_inflight": true, "flush.sync_concurrency": true, "flush.syncfs_min_partitions": true,
		"logging.level": true, "logging.format": true,
		"log.retention_check_interval": true, "topics.auto_create": true,
		"disk.hard_watermark": true, "disk.soft_watermark": true, "disk.min_free_bytes": true, "disk.check_interval": true,
	}
	for _, key := range Default().Keys() {
		if got := Reloadable(key); got != hot[key] {
			t.Errorf("Reloadable(%s) = %v, want %v", key, got, hot[key])
		}
	}
	if Reloadable("flush") || Reloadable("nope.key") {
		t.Error("Reloadable is true for a key that does not exist")
	}
}

func TestDiff(t *testing.T) {
	a := Default()
	if d := Diff(a, Default()); len(d) != 0 {
		t.Errorf("Diff of equal configs = %v", d)
	}
	b := a.Clone()
	b.Set("logging.level", "debug", Flag)
	b.Set("node.data_dir", "/var/lib/eddy", Env)
	b.Set("tls.hosts", "edge1", File)
	b.Set("flush.max_delay", "2ms", Env) // same value, other source: not a change
	want := []string{"node.data_dir", "tls.hosts", "logging.level"}
	if d := Diff(a, b); !slices.Equal(d, want) {
		t.Errorf("Diff = %v, want %v", d, want)
	}
	if d := Diff(nil, b); !slices.Equal(d, want) {
		t.Errorf("Diff(nil, b) = %v, want %v", d, want)
	}
	if a.Node.DataDir != "./eddy-data" || len(a.TLS.Hosts) != 0 || a.Source("logging.level") != BuiltIn {
		t.Error("Clone shares state with the original")
	}
}

func TestEnvKey(t *testing.T) {
	tests := map[string]string{
		"flush.max_delay":      "EDDY_FLUSH_MAX_DELAY",
		"listeners.kafka.addr": "EDDY_LISTENERS_KAFKA_ADDR",
		"node.id":              "EDDY_NODE_ID",
	}
	for key, want := range tests {
		if got := EnvKey(key); got != want {
			t.Errorf("EnvKey(%s) = %s, want %s", key, got, want)
		}
	}
	// No two keys share a variable, and none takes an alias or EDDY_CONFIG.
	seen := map[string]string{EnvConfigFile: EnvConfigFile}
	for alias := range envAliases {
		seen[alias] = "alias " + alias
	}
	for _, key := range Default().Keys() {
		name := EnvKey(key)
		if other, ok := seen[name]; ok && envAliases[name] != key {
			t.Errorf("%s and %s both map to %s", key, other, name)
		}
		seen[name] = key
	}
}

func TestSourceString(t *testing.T) {
	want := []string{"built-in", "io-profile", "file", "env", "flag"}
	for i, s := range []Source{BuiltIn, IOProfile, File, Env, Flag} {
		if s.String() != want[i] {
			t.Errorf("Source(%d).String() = %q, want %q", i, s.String(), want[i])
		}
	}
	if !strings.Contains(Source(9).String(), "9") {
		t.Errorf("unknown source prints %q", Source(9).String())
	}
}

// TestAutoKeepsTheLowerLayer: "auto" on a tunable key keeps the
// io-profile's value (or the built-in one); on other keys it is refused.
func TestAutoKeepsTheLowerLayer(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "io-profile.toml")
	if err := os.WriteFile(profile, []byte("[log]\nsegment_bytes = \"256MiB\"\n[flush]\nmax_delay = \"5ms\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "eddy.toml")
	if err := os.WriteFile(file, []byte("[log]\nsegment_bytes = \"auto\"\n[flush]\nmax_delay = \"auto\"\nmax_batch_bytes = \"auto\"\n[io]\nread_concurrency = \"auto\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{File: file, IOProfile: profile})
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.SegmentBytes != 256*MiB || c.Source("log.segment_bytes") != IOProfile || c.Flush.MaxDelay.D() != 5*time.Millisecond {
		t.Fatalf("auto did not keep the io-profile: segment %s (%s), max_delay %s", c.Log.SegmentBytes, c.Source("log.segment_bytes"), c.Flush.MaxDelay)
	}
	if c.Source("flush.max_batch_bytes") != BuiltIn || c.Source("io.read_concurrency") != BuiltIn {
		t.Fatal("auto without a profile value did not keep the built-in one")
	}
	if err := c.Set("node.id", "auto", Flag); err == nil {
		t.Fatal("auto accepted for node.id")
	}
	if err := c.Set("flush.max_delay", "auto", Env); err != nil || c.Flush.MaxDelay.D() != 5*time.Millisecond {
		t.Fatalf("auto from the environment: %v, %s", err, c.Flush.MaxDelay)
	}
}
