package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTopicProduceConsumeCommands(t *testing.T) {
	dir := t.TempDir()
	p := startEddy(t, dir)
	for _, transport := range []string{"quic", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			addr := p.quic
			if transport == "tcp" {
				addr = p.kafka
			}
			eddy := func(stdin string, args ...string) string {
				t.Helper()
				all := append(args, "--brokers", addr, "--transport", transport, "--data-dir", dir)
				out, err := run(t, stdin, all...)
				if err != nil {
					t.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return out
			}
			topic := "cli-" + transport
			if out := eddy("", "topic", "create", topic, "--partitions", "3", "--config", "retention.ms=3600000"); !strings.Contains(out, "created topic "+topic+" with 3 partitions") {
				t.Fatalf("create: %s", out)
			}
			if out := eddy("", "topic", "list"); !strings.Contains(out, topic) {
				t.Fatalf("list: %s", out)
			}
			eddy("one\ntwo\nthree\n", "produce", topic, "--partition", "1", "--header", "src=test")
			eddy("k1=v1\nk2=v2\n", "produce", topic, "--partition", "2", "--key-separator", "=")
			out := eddy("", "consume", topic, "--partition", "1")
			if out != "one\ntwo\nthree\n" {
				t.Fatalf("consume values: %q", out)
			}
			out = eddy("", "consume", topic, "--partition", "2", "--format", "json")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 {
				t.Fatalf("json lines: %q", out)
			}
			var rec jsonRecord
			if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil || *rec.Key != "k2" || *rec.Value != "v2" || rec.Offset != 1 || rec.Partition != 2 {
				t.Fatalf("json record: %+v %v", rec, err)
			}
			if out := eddy("", "consume", topic, "--partition", "1", "--from", "2"); out != "three\n" {
				t.Fatalf("consume from offset 2: %q", out)
			}
			if out := eddy("", "consume", topic, "--from", "end"); out != "" {
				t.Fatalf("consume from the end without --follow: %q", out)
			}
			out = eddy("", "consume", topic, "--partition", "1", "--format", "text", "--count", "1")
			if f := strings.Split(strings.TrimSpace(out), "\t"); len(f) != 5 || f[0] != "1" || f[1] != "0" || f[4] != "one" {
				t.Fatalf("text format: %q", out)
			}
			eddy("", "topic", "alter", topic, "--config", "retention.ms=7200000")
			desc := eddy("", "topic", "describe", topic)
			if !strings.Contains(desc, "retention.ms") || !strings.Contains(desc, "7200000") || !strings.Contains(desc, "(topic)") {
				t.Fatalf("describe after alter:\n%s", desc)
			}
			if !regexp.MustCompile(`(?m)^1\s+1\s+\[1\]\s+\[1\]\s+0\s+3\s+3$`).MatchString(desc) {
				t.Fatalf("describe partitions:\n%s", desc)
			}
			if out, err := run(t, "", "topic", "alter", topic, "--config", "retention.ms=soon", "--brokers", addr, "--transport", transport, "--data-dir", dir); err == nil || !strings.Contains(out, "retention.ms") {
				t.Fatalf("bad alter accepted: %v %s", err, out)
			}
			eddy("", "topic", "delete", topic)
			if out := eddy("", "topic", "list"); strings.Contains(out, topic) {
				t.Fatalf("deleted topic listed: %s", out)
			}
		})
	}
}

func TestTLSCAPrintsTheNodesCA(t *testing.T) {
	dir := t.TempDir()
	startEddy(t, dir)
	out, err := run(t, "", "tls", "ca", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("tls ca: %v\n%s", err, out)
	}
}

func TestGroupCommands(t *testing.T) {
	dir := t.TempDir()
	p := startEddy(t, dir)
	eddy := func(stdin string, args ...string) string {
		t.Helper()
		out, err := run(t, stdin, append(args, "--brokers", p.quic, "--data-dir", dir)...)
		if err != nil {
			t.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	eddy("", "topic", "create", "gt", "--partitions", "1")
	var in strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&in, "r%d\n", i)
	}
	eddy(in.String(), "produce", "gt")
	if out := eddy("", "consume", "gt", "--group", "g1", "--count", "4"); out != "r0\nr1\nr2\nr3\n" {
		t.Fatalf("first group read: %q", out)
	}
	desc := eddy("", "group", "describe", "g1")
	if !regexp.MustCompile(`(?m)^gt\s+0\s+4\s+10\s+6$`).MatchString(desc) {
		t.Fatalf("describe: committed 4, end 10, lag 6 expected:\n%s", desc)
	}
	if out := eddy("", "consume", "gt", "--group", "g1", "--count", "6"); out != "r4\nr5\nr6\nr7\nr8\nr9\n" {
		t.Fatalf("the group did not resume at its commit: %q", out)
	}
	if out := eddy("", "group", "list"); !strings.Contains(out, "g1") {
		t.Fatalf("list: %s", out)
	}
	plan := eddy("", "group", "reset-offsets", "g1", "--topic", "gt", "--to", "earliest")
	if !strings.Contains(plan, "dry run") || !regexp.MustCompile(`(?m)^gt\s+0\s+10\s+0$`).MatchString(plan) {
		t.Fatalf("dry run:\n%s", plan)
	}
	if desc := eddy("", "group", "describe", "g1"); !regexp.MustCompile(`(?m)^gt\s+0\s+10\s+10\s+0$`).MatchString(desc) {
		t.Fatalf("a dry run changed the offsets:\n%s", desc)
	}
	eddy("", "group", "reset-offsets", "g1", "--topic", "gt", "--to", "2", "--execute")
	if out := eddy("", "consume", "gt", "--group", "g1", "--count", "2"); out != "r2\nr3\n" {
		t.Fatalf("after reset to 2: %q", out)
	}
	eddy("", "group", "delete", "g1")
	if out := eddy("", "group", "list"); strings.Contains(out, "g1") {
		t.Fatalf("deleted group listed: %s", out)
	}
}

// TestTopicDescribeShowsTheCleaner: a compacted topic's describe reports
// its storage and, once the cleaner has run, what it removed.
func TestTopicDescribeShowsTheCleaner(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("EDDY_LOG_CLEANER_INTERVAL", "50ms")
	p := startEddy(t, dir)
	eddy := func(stdin string, args ...string) string {
		t.Helper()
		all := append(args, "--brokers", p.kafka, "--transport", "tcp", "--admin", p.admin)
		out, err := run(t, stdin, all...)
		if err != nil {
			t.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	eddy("", "topic", "create", "table", "--partitions", "1", "--config", "cleanup.policy=compact",
		"--config", "segment.bytes=1024", "--config", "min.cleanable.dirty.ratio=0.01")
	// Ten produce runs, ten batches: segments of 1 KiB roll between them.
	for b := 0; b < 10; b++ {
		var in strings.Builder
		for i := b * 20; i < (b+1)*20; i++ {
			fmt.Fprintf(&in, "k%d=v%d\n", i%5, i)
		}
		eddy(in.String(), "produce", "table", "--key-separator", "=")
	}
	re := regexp.MustCompile(`(?m)^0\s+idle\s+\d+%\s+\d+\s+\S+\s+(\d+)\s+(\d+)\s+0\s*$`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		desc := eddy("", "topic", "describe", "table")
		if !strings.Contains(desc, "STORAGE") {
			t.Fatalf("no storage section:\n%s", desc)
		}
		if m := re.FindStringSubmatch(desc); m != nil && m[2] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cleaner never shows removed records:\n%s", desc)
		}
		<-time.After(100 * time.Millisecond)
	}
	if out := eddy("", "consume", "table", "--format", "json"); strings.Count(out, "\n") >= 200 {
		t.Fatalf("consumer still reads all 200 records after cleaning")
	}
}
