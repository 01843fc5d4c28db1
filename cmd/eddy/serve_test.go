package main

import (
	"os"
	"strings"
	"testing"
)

func TestServeRefusesInvalidConfigListingEveryProblem(t *testing.T) {
	f := t.TempDir() + "/eddy.toml"
	os.WriteFile(f, []byte(`
[flush]
mode = "whenever"
max_delay = "2 weeks"
[listeners.kafka]
addr = "no-port"
[topics]
default_partitions = 0
`), 0o644)
	out, err := run(t, "", "serve", "--config", f, "--data-dir", t.TempDir())
	if err == nil {
		t.Fatalf("eddy served with an invalid config:\n%s", out)
	}
	for _, key := range []string{"flush.mode", "flush.max_delay", "listeners.kafka.addr", "topics.default_partitions"} {
		if !strings.Contains(out, key) {
			t.Errorf("the error does not name %s:\n%s", key, out)
		}
	}
	out, err = run(t, "", "serve", "--data-dir", t.TempDir(), "--kafka-addr", "127.0.0.1:notaport")
	if err == nil || !strings.Contains(out, "listeners.kafka.addr") {
		t.Fatalf("bad flag: %v\n%s", err, out)
	}
}

func TestConfigPrintShowsSources(t *testing.T) {
	out, err := run(t, "", "config", "print", "--kafka-addr", "127.0.0.1:19092")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `addr = "127.0.0.1:19092"`) || !strings.Contains(out, "flag") || !strings.Contains(out, "built-in") {
		t.Fatalf("config print:\n%s", out)
	}
}
