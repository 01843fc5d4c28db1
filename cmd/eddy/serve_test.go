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

// TestServeRefusesADataDirInUse: a second `eddy serve` on the data
// directory of a running one exits at once with an error naming the
// directory, without probing the disk (whose test files and figures would
// disturb the running node); the running node keeps serving.
func TestServeRefusesADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	p := startEddy(t, dir)
	t.Setenv("EDDY_DISK_TUNING", "auto")
	out, err := run(t, "", "serve", "--data-dir", dir, "--kafka-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if err == nil {
		t.Fatalf("a second eddy served on %s:\n%s", dir, out)
	}
	if !strings.Contains(out, "data dir "+dir+" is in use by another process") {
		t.Fatalf("the error does not say the data dir is in use:\n%s", out)
	}
	if strings.Contains(out, "probing") || strings.Contains(out, "io-profile") {
		t.Fatalf("the refused serve probed the disk:\n%s", out)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".eddy-io-probe-") || strings.HasPrefix(e.Name(), "io-profile") {
			t.Fatalf("the refused serve left %s in the data dir", e.Name())
		}
	}
	if out, err := run(t, "", "topic", "create", "still-serving", "--partitions", "1", "--transport", "tcp", "--brokers", p.kafka); err != nil {
		t.Fatalf("the running node after the refused start: %v\n%s", err, out)
	}
}
