package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// loaded returns a config with values from every layer.
func loaded(t *testing.T) *Config {
	t.Helper()
	file := writeFile(t, "eddy.toml", `
[tls]
hosts = ["edge1.example", "quote\"and\\slash"]
cert_file = "/etc/eddy/node.pem"
key_file = "/etc/eddy/node.key"
[log]
retention_ms = "forever"
segment_bytes = 1000000
`)
	c, err := Load(LoadOptions{
		File:  file,
		Env:   []string{"EDDY_DATA_DIR=/var/lib/eddy", "EDDY_FLUSH_MAX_DELAY=36h"},
		Flags: map[string]string{"logging.level": "debug", "listeners.quic.addr": ""},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestExplain(t *testing.T) {
	c := loaded(t)
	tests := []struct {
		section string
		want    []string // each must appear on the line of its key
		lines   int      // key lines expected
	}{
		{section: "", lines: len(c.Keys())},
		{section: "node", want: []string{
			"node.data_dir|\"/var/lib/eddy\"|env EDDY_DATA_DIR|on restart|Directory holding",
			"node.id|1|built-in|on restart",
		}, lines: 3},
		{section: "flush", want: []string{"flush.max_delay|\"36h\"|env EDDY_FLUSH_MAX_DELAY|on reload|Longest"}, lines: 6},
		{section: "listeners", lines: 13},
		{section: "listeners.quic", want: []string{"listeners.quic.addr|\"\"|flag|on restart"}, lines: 11},
		{section: "log.retention_ms", want: []string{"log.retention_ms|\"forever\"|file "}, lines: 1},
		{section: "logging", want: []string{"logging.level|\"debug\"|flag|on reload"}, lines: 2},
	}
	for _, tt := range tests {
		t.Run(tt.section, func(t *testing.T) {
			var b bytes.Buffer
			if err := c.Explain(&b, tt.section); err != nil {
				t.Fatalf("Explain: %v", err)
			}
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if !strings.HasPrefix(lines[0], "KEY") || len(lines)-1 != tt.lines {
				t.Errorf("%d key lines, want %d:\n%s", len(lines)-1, tt.lines, b.String())
			}
			for _, w := range tt.want {
				fields := strings.Split(w, "|")
				found := false
				for _, line := range lines {
					if strings.HasPrefix(line, fields[0]+" ") {
						found = true
						for _, f := range fields[1:] {
							if !strings.Contains(line, f) {
								t.Errorf("line %q lacks %q", line, f)
							}
						}
					}
				}
				if !found {
					t.Errorf("no line for %s:\n%s", fields[0], b.String())
				}
			}
		})
	}
	for _, bad := range []string{"nope", "flus", "node.i"} {
		if err := c.Explain(&bytes.Buffer{}, bad); err == nil || !strings.Contains(err.Error(), "unknown section") {
			t.Errorf("Explain(%q) = %v, want an unknown section error", bad, err)
		}
	}
}

func TestWriteTOML(t *testing.T) {
	c := loaded(t)
	var b bytes.Buffer
	if err := c.WriteTOML(&b); err != nil {
		t.Fatalf("WriteTOML: %v", err)
	}
	out := b.String()
	for _, want := range []string{
		"[node]\n",
		"[listeners.quic]\n",
		"data_dir = \"/var/lib/eddy\"  # from env EDDY_DATA_DIR\n",
		"id = 1 ",
		"# from built-in\n",
		"max_delay = \"36h\"",
		"# from env EDDY_FLUSH_MAX_DELAY",
		"retention_ms = \"forever\"",
		"retention_bytes = -1 ",
		"segment_bytes = \"1MB\"",
		"level = \"debug\"",
		"# from flag\n",
		`hosts = ["edge1.example", "quote\"and\\slash"]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Every key line carries its source.
	for line := range strings.Lines(out) {
		if strings.Contains(line, " = ") && !strings.Contains(line, "# from ") {
			t.Errorf("line without a source: %q", line)
		}
	}

	// It is valid TOML with exactly the schema's keys...
	var raw map[string]any
	md, err := toml.Decode(out, &raw)
	if err != nil {
		t.Fatalf("output is not TOML: %v\n%s", err, out)
	}
	n := 0
	for _, k := range md.Keys() {
		if md.Type(k...) != "Hash" {
			n++
		}
	}
	if n != len(c.Keys()) {
		t.Errorf("output has %d keys, want %d", n, len(c.Keys()))
	}
	// ...and loading it back gives an equal config.
	path := filepath.Join(t.TempDir(), "printed.toml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := Load(LoadOptions{File: path})
	if err != nil {
		t.Fatalf("Load of printed config: %v\n%s", err, out)
	}
	if d := Diff(c, back); len(d) != 0 {
		t.Errorf("printed config loads back different in %v", d)
	}
	if len(back.TLS.Hosts) != 2 || back.TLS.Hosts[1] != `quote"and\slash` {
		t.Errorf("hosts = %q", back.TLS.Hosts)
	}
}

func TestQuoteTOML(t *testing.T) {
	for _, s := range []string{"", "plain", `a"b`, `c:\dir`, "tab\there", "line\nbreak", "bell\a", "ünï"} {
		var v struct{ S string }
		if _, err := toml.Decode("S = "+quoteTOML(s), &v); err != nil || v.S != s {
			t.Errorf("quoteTOML(%q) = %s decodes to %q, %v", s, quoteTOML(s), v.S, err)
		}
	}
}
