package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFile writes a TOML file into a fresh temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadNoLayers(t *testing.T) {
	c, err := Load(LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if d := Diff(Default(), c); len(d) != 0 {
		t.Errorf("Load with no layers differs from Default in %v", d)
	}
}

func TestLoadPrecedence(t *testing.T) {
	profile := writeFile(t, "io-profile.toml", `
[flush]
max_batch_bytes = "4MiB"
max_delay = "3ms"
[log]
preallocate_bytes = "64MiB"
`)
	file := writeFile(t, "eddy.toml", `
[flush]
max_delay = "5ms"
sync_concurrency = 4
[logging]
level = "warn"
`)
	env := []string{"EDDY_FLUSH_MAX_DELAY=7ms", "EDDY_LOGGING_LEVEL=error", "PATH=/usr/bin"}
	flags := map[string]string{"flush.max_delay": "9ms"}

	type want struct {
		value string
		src   Source
	}
	tests := []struct {
		name string
		opts LoadOptions
		want map[string]want
	}{
		{"built-in", LoadOptions{}, map[string]want{
			"flush.max_delay": {"2ms", BuiltIn}, "flush.max_batch_bytes": {"1MiB", BuiltIn},
		}},
		{"io-profile over built-in", LoadOptions{IOProfile: profile}, map[string]want{
			"flush.max_delay": {"3ms", IOProfile}, "flush.max_batch_bytes": {"4MiB", IOProfile},
			"log.preallocate_bytes": {"64MiB", IOProfile}, "flush.sync_concurrency": {"8", BuiltIn},
		}},
		{"file over io-profile", LoadOptions{IOProfile: profile, File: file}, map[string]want{
			"flush.max_delay": {"5ms", File}, "flush.max_batch_bytes": {"4MiB", IOProfile},
			"flush.sync_concurrency": {"4", File}, "logging.level": {"warn", File},
		}},
		{"env over file", LoadOptions{IOProfile: profile, File: file, Env: env}, map[string]want{
			"flush.max_delay": {"7ms", Env}, "logging.level": {"error", Env}, "flush.sync_concurrency": {"4", File},
		}},
		{"flag over env", LoadOptions{IOProfile: profile, File: file, Env: env, Flags: flags}, map[string]want{
			"flush.max_delay": {"9ms", Flag}, "logging.level": {"error", Env},
			"flush.max_batch_bytes": {"4MiB", IOProfile}, "node.id": {"1", BuiltIn},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for key, w := range tt.want {
				got, _ := c.Get(key)
				if got != w.value || c.Source(key) != w.src {
					t.Errorf("%s = %q from %v, want %q from %v", key, got, c.Source(key), w.value, w.src)
				}
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	file := writeFile(t, "eddy.toml", `
[node]
profile = "staging"          # bad enum
colour = "blue"              # unknown key

[listeners.quic]
idle_timeout = "2xs"         # bad duration
initial_stream_window = "32MiB"
max_stream_window = "16MiB"  # reversed windows

[flush]
max_batch_bytes = "12XB"     # bad size
max_delay = 5                # integer duration

[telemetree]                 # unknown section
port = 9100
deeper = { a = 1 }

[log]
retention_ms = -1            # forever, fine
segment_bytes = { size = 1 } # a table where a value belongs
`)
	_, err := Load(LoadOptions{
		File:  file,
		Env:   []string{"EDDY_TOPICS_DEFAULT_PARTITIONS=many"},
		Flags: map[string]string{"logging.colour": "yes", "logging.level": "loud"},
	})
	if err == nil {
		t.Fatal("Load accepted a broken file")
	}
	msg := err.Error()
	for _, want := range []string{
		`node.profile: "staging" is not one of dev, production (file ` + file + `)`,
		"node.colour: unknown key",
		`listeners.quic.idle_timeout: "2xs" is not a duration`,
		"listeners.quic.max_stream_window: 16MiB is below listeners.quic.initial_stream_window (32MiB) (file " + file + ")",
		`flush.max_batch_bytes: "12XB" is not a size`,
		`flush.max_delay: 5 has no unit; write a string with one, e.g. "5s" or "5ms"`,
		"telemetree: unknown section",
		"log.segment_bytes: expected a size",
		`topics.default_partitions: "many" is not an integer (env EDDY_TOPICS_DEFAULT_PARTITIONS)`,
		"logging.colour: unknown key",
		`logging.level: "loud" is not one of`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	// Keys under an unknown section are not reported one by one, and the
	// valid retention_ms raised nothing.
	for _, unwanted := range []string{"telemetree.port", "telemetree.deeper", "retention_ms", "segment_bytes.size"} {
		if strings.Contains(msg, unwanted) {
			t.Errorf("error mentions %q", unwanted)
		}
	}
	if t.Failed() {
		t.Logf("error:\n%s", msg)
	}
	if n := strings.Count(msg, "\n") + 1; n != 11 {
		t.Errorf("%d problems reported, want 11:\n%s", n, msg)
	}
}

func TestLoadFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(LoadOptions{File: missing})
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}

	syntax := writeFile(t, "bad.toml", "[node]\nid = 1\ndata_dir = \"unterminated\n")
	_, err = Load(LoadOptions{File: syntax, Env: []string{"EDDY_NODE_ID=x"}})
	if err == nil || !strings.Contains(err.Error(), syntax+": line 3, column") {
		t.Errorf("syntax error without path, line and column: %v", err)
	}
	// Problems in later layers are still reported beside the syntax error.
	if err == nil || !strings.Contains(err.Error(), "EDDY_NODE_ID") {
		t.Errorf("env problem dropped after a file error: %v", err)
	}

	_, err = Load(LoadOptions{IOProfile: missing})
	if err == nil || !strings.Contains(err.Error(), "io-profile") || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing io-profile: %v", err)
	}

	notTable := writeFile(t, "flat.toml", "flush = 3\n[listeners]\nquic = \"udp\"\n[[logging]]\nlevel = \"info\"\n")
	_, err = Load(LoadOptions{File: notTable})
	for _, want := range []string{
		"flush: is a section: expected a table, found integer 3 (file " + notTable + ")",
		`listeners.quic: is a section: expected a table, found string "udp"`,
		"logging: is a section: expected a table, found an array",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sections given as values: error lacks %q: %v", want, err)
		}
	}
}

func TestLoadTOMLTypes(t *testing.T) {
	file := writeFile(t, "eddy.toml", `
[tls]
hosts = ["edge1.example", "10.0.0.5"]
[topics]
auto_create = false
[log]
retention_ms = -1
retention_bytes = 1073741824
segment_ms = "1d12h"
`)
	c, err := Load(LoadOptions{File: file})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(c.TLS.Hosts, []string{"edge1.example", "10.0.0.5"}) || c.Topics.AutoCreate != "false" ||
		!c.Log.RetentionMs.IsForever() || c.Log.RetentionBytes != GiB || c.Log.SegmentMs.String() != "36h" {
		t.Errorf("decoded %v %q %v %v %v", c.TLS.Hosts, c.Topics.AutoCreate, c.Log.RetentionMs, c.Log.RetentionBytes, c.Log.SegmentMs)
	}

	bad := writeFile(t, "bad.toml", `
[tls]
hosts = ["a", 1]
[kafka]
validate_records = "yes"
max_inflight_per_conn = "16"
[node]
profile = true
[flush]
max_delay = -1
`)
	_, err = Load(LoadOptions{File: bad})
	for _, want := range []string{
		"tls.hosts: expected an array of strings, found an element integer 1",
		`kafka.validate_records: expected true or false, found string "yes"`,
		`kafka.max_inflight_per_conn: expected an integer, found string "16"`,
		"node.profile: expected a string, found boolean true",
		"flush.max_delay: -1 (forever) is not allowed",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestLoadEnv(t *testing.T) {
	file := writeFile(t, "from-env.toml", "[node]\nid = 42\n")
	tests := []struct {
		name    string
		env     []string
		want    map[string]string
		wantErr []string
	}{
		{
			name: "aliases",
			env: []string{
				"EDDY_DATA_DIR=/var/lib/eddy", "EDDY_KAFKA_ADDR=0.0.0.0:19092",
				"EDDY_QUIC_ADDR=", "EDDY_ADMIN_ADDR=127.0.0.1:19644",
			},
			want: map[string]string{
				"node.data_dir": "/var/lib/eddy", "listeners.kafka.addr": "0.0.0.0:19092",
				"listeners.quic.addr": "", "admin.addr": "127.0.0.1:19644",
			},
		},
		{
			name: "full name beats alias",
			env:  []string{"EDDY_NODE_DATA_DIR=/data/full", "EDDY_DATA_DIR=/data/alias"},
			want: map[string]string{"node.data_dir": "/data/full"},
		},
		{
			name: "EDDY_CONFIG names the file, client variables are ignored",
			env:  []string{"EDDY_CONFIG=" + file, "EDDY_BROKERS=a:9092,b:9092", "EDDY_TOPIC=x", "HOME=/root"},
			want: map[string]string{"node.id": "42"},
		},
		{
			name: "later duplicate wins",
			env:  []string{"EDDY_LOGGING_LEVEL=warn", "EDDY_LOGGING_LEVEL=debug"},
			want: map[string]string{"logging.level": "debug"},
		},
		{
			name:    "bad values name the variable and key",
			env:     []string{"EDDY_FLUSH_MAX_DELAY=2xs", "EDDY_DATA_DIR=", "EDDY_LISTENERS_KAFKA_ADVERTISED=0.0.0.0:9092"},
			wantErr: []string{`flush.max_delay: "2xs" is not a duration (units: ns, us, ms, s, m, h, d) (env EDDY_FLUSH_MAX_DELAY)`, "node.data_dir: must not be empty (env EDDY_DATA_DIR)", "listeners.kafka.advertised:", "(env EDDY_LISTENERS_KAFKA_ADVERTISED)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(LoadOptions{Env: tt.env})
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("Load accepted bad env values")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for key, want := range tt.want {
				if got, _ := c.Get(key); got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
				wantSrc := Env
				if key == "node.id" {
					wantSrc = File
				}
				if c.Source(key) != wantSrc {
					t.Errorf("Source(%s) = %v, want %v", key, c.Source(key), wantSrc)
				}
			}
			// Nothing else moved.
			for _, key := range Diff(Default(), c) {
				if _, ok := tt.want[key]; !ok {
					t.Errorf("%s changed unexpectedly", key)
				}
			}
		})
	}
}

func TestLoadFileOptionBeatsEnvConfig(t *testing.T) {
	a := writeFile(t, "a.toml", "[node]\nid = 2\n")
	b := writeFile(t, "b.toml", "[node]\nid = 3\n")
	c, err := Load(LoadOptions{File: a, Env: []string{"EDDY_CONFIG=" + b}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.ID != 2 {
		t.Errorf("node.id = %d, want 2 from the File option", c.Node.ID)
	}
	if !strings.Contains(c.origin("node.id"), a) {
		t.Errorf("origin of node.id = %q, want the path %s", c.origin("node.id"), a)
	}
}

func TestLoadValidatesResult(t *testing.T) {
	file := writeFile(t, "eddy.toml", "[admin]\naddr = \"127.0.0.1:9092\"\n")
	_, err := Load(LoadOptions{File: file})
	if err == nil || !strings.Contains(err.Error(), "admin.addr: \"127.0.0.1:9092\" takes the same TCP port") {
		t.Errorf("Load = %v, want the port clash", err)
	}
	if err != nil && !strings.Contains(err.Error(), "(file "+file+")") {
		t.Errorf("cross-key problem does not say where the value came from: %v", err)
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"typo", "[flush]\nmax_dealy = \"1ms\"\n",
			[]string{"flush.max_dealy: unknown key; did you mean flush.max_delay?"}},
		{"wrong section", "[node]\nmax_delay = \"1ms\"\n",
			[]string{"node.max_delay: unknown key; did you mean flush.max_delay?"}},
		{"case differs", "[flush]\nMax_Delay = \"1ms\"\n",
			[]string{"flush.Max_Delay: unknown key; did you mean flush.max_delay?"}},
		{"section case differs", "[Flush]\nmax_delay = \"1ms\"\n",
			[]string{"Flush: unknown section"}},
		{"quoted dotted name", "\"flush.max_delay\" = \"1ms\"\n",
			[]string{`"flush.max_delay": unknown key; did you mean flush.max_delay?`}},
		{"dotted keys", "flush.max_dealy = \"1ms\"\n",
			[]string{"flush.max_dealy: unknown key; did you mean flush.max_delay?"}},
		{"inline table", "listeners = { quic = { idle = \"1s\" } }\n",
			[]string{"listeners.quic.idle: unknown key"}},
		{"nested unknown section", "[listeners.http]\naddr = \":80\"\nport = 80\n",
			[]string{"listeners.http: unknown section"}},
		{"array of tables", "[[flush]]\nmode = \"os\"\n",
			[]string{"flush: is a section: expected a table, found an array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "eddy.toml", tt.text)
			_, err := Load(LoadOptions{File: file})
			if err == nil {
				t.Fatal("Load accepted the file")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w+" (file "+file+")") {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}
