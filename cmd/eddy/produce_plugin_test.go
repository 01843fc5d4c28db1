package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// TestProduceWithPartitionerPlugin registers the jsonfield partitioner,
// binds it to a topic and checks that `eddy produce` places records by the
// plugin (by a field of the value, not by the key), that --no-plugin
// places them by key, and that a record the plugin rejects fails the
// command.
func TestProduceWithPartitionerPlugin(t *testing.T) {
	wasmPath := plugintest.BuildGo(t, "../../examples/plugins/jsonfield")
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	digest := sandbox.DigestOf(wasm).String()

	dir := t.TempDir()
	p := startEddy(t, dir)
	// The client commands find the node through the environment; the
	// plugin module cache goes to a directory of this test.
	t.Setenv("EDDY_BROKERS", p.kafka)
	t.Setenv("EDDY_TRANSPORT", "tcp")
	t.Setenv("EDDY_DATA_DIR", dir)
	t.Setenv("EDDY_ADMIN_ADDR", p.admin)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	eddy := func(stdin string, args ...string) string {
		t.Helper()
		out, err := run(t, stdin, args...)
		if err != nil {
			t.Fatalf("eddy %s: %v\n%s\nbroker log:\n%s", strings.Join(args, " "), err, out, p.logs())
		}
		return out
	}

	if out := eddy("", "plugin", "add", wasmPath, "--name", "site"); !strings.Contains(out, digest) {
		t.Fatalf("plugin add does not print the digest %s:\n%s", digest, out)
	}
	const parts = 6
	eddy("", "topic", "create", "sites", "--partitions", fmt.Sprint(parts),
		"--config", "plugin.partitioner=site@"+digest,
		"--config", `plugin.partitioner.config={"field":"site_id","fallback":"reject"}`)

	// Keys and sites that hash to different partitions, so that the
	// placement tells which one was used.
	var lines strings.Builder
	want := map[string]int32{} // key -> partition
	for i := 0; len(want) < 24; i++ {
		key, site := fmt.Sprintf("dev-%d", i), fmt.Sprintf("site-%d", i%5)
		bySite := abi.KafkaPartition([]byte(site), parts)
		if bySite == abi.KafkaPartition([]byte(key), parts) {
			continue
		}
		fmt.Fprintf(&lines, "%s|{\"site_id\":%q,\"n\":%d}\n", key, site, i)
		want[key] = bySite
	}
	out := eddy(lines.String(), "produce", "sites", "--key-separator", "|")
	if !strings.Contains(out, "site@"+digest) || !strings.Contains(out, fmt.Sprintf("produced %d records", len(want))) {
		t.Fatalf("produce output:\n%s", out)
	}

	// --no-plugin: Kafka's placement by key.
	var plain strings.Builder
	for i := range 8 {
		key := fmt.Sprintf("plain-%d", i)
		fmt.Fprintf(&plain, "%s|{\"site_id\":\"site-0\"}\n", key)
		want[key] = abi.KafkaPartition([]byte(key), parts)
	}
	eddy(plain.String(), "produce", "sites", "--key-separator", "|", "--no-plugin")

	got := 0
	for _, line := range strings.Split(strings.TrimSpace(eddy("", "consume", "sites", "--format", "json")), "\n") {
		var r jsonRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Key == nil {
			t.Fatalf("consumed %q: %v", line, err)
		}
		w, ok := want[*r.Key]
		if !ok {
			t.Fatalf("unexpected record %s", line)
		}
		if r.Partition != w {
			t.Errorf("record %s in partition %d, want %d", *r.Key, r.Partition, w)
		}
		got++
	}
	if got != len(want) {
		t.Fatalf("consumed %d records, produced %d", got, len(want))
	}

	// The plugin rejects a value without the field: nothing is produced
	// and the command says why.
	out, err = run(t, "bad|{\"other\":1}\n", "produce", "sites", "--key-separator", "|")
	if err == nil || !strings.Contains(out, "rejected the record") || !strings.Contains(out, "produced 0 records") {
		t.Fatalf("rejected record: %v\n%s", err, out)
	}
}
