package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// benchJSON runs `eddy bench ... --json` and decodes its stdout.
func benchJSON(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, append(append([]string{"bench"}, args...), "--json")...)
	cmd.Env = append(os.Environ(), "EDDY_CONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	t.Logf("eddy bench %s: %s", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("eddy bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	var res result
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("eddy bench %s: decode JSON: %v\n%s", strings.Join(args, " "), err, stdout.String())
	}
	return res
}

// checkSide checks one side's figures: the record count, the rates, and
// the latency percentiles when wantLatency.
func checkSide(t *testing.T, name string, s *sideResult, records int64, wantLatency bool) {
	t.Helper()
	if s == nil {
		t.Fatalf("%s: missing from the result", name)
	}
	if records >= 0 && s.Records != records {
		t.Errorf("%s: %d records, want %d", name, s.Records, records)
	}
	if s.Records <= 0 || s.Bytes <= 0 || s.DurationSec <= 0 || s.RecordsPerS <= 0 || s.MBPerS <= 0 {
		t.Errorf("%s: implausible figures %+v", name, *s)
	}
	if s.Errors != 0 || s.FirstError != "" {
		t.Errorf("%s: %d errors, first %q", name, s.Errors, s.FirstError)
	}
	if !wantLatency {
		if s.LatencyMs != nil {
			t.Errorf("%s: latency where none is measured: %+v", name, *s.LatencyMs)
		}
		return
	}
	l := s.LatencyMs
	if l == nil || s.LatencyBasis == "" {
		t.Fatalf("%s: no latency", name)
	}
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Mean > 0 && l.Mean <= l.Max) {
		t.Errorf("%s: latency percentiles out of order: %+v", name, *l)
	}
}

func TestBenchProduceConsumeE2E(t *testing.T) {
	dir := t.TempDir()
	p := startEddy(t, dir)
	for _, transport := range []string{"quic", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			addr := p.quic
			if transport == "tcp" {
				addr = p.kafka
			}
			conn := []string{"--brokers", addr, "--transport", transport, "--data-dir", dir}
			bench := func(args ...string) result {
				t.Helper()
				return benchJSON(t, append(args, conn...)...)
			}
			topic := "bench-" + transport

			res := bench("produce", "--topic", topic, "--partitions", "3", "--producers", "2", "--records", "3001",
				"--record-size", "100-300", "--keys", "50", "--compression", "lz4")
			if res.Mode != "produce" || res.Consume != nil || res.Config.Partitions != 3 || res.Config.Transport != transport || res.Config.Producers != 2 || res.ElapsedSec <= 0 {
				t.Fatalf("produce: %+v", res)
			}
			checkSide(t, "produce", res.Produce, 3001, true)
			produced := res.Produce.Bytes
			if lo, hi := int64(3001*(100+len("key-0"))), int64(3001*(300+len("key-49"))); produced < lo || produced > hi {
				t.Errorf("produce: %d bytes for 3001 records of 100-300 bytes with keys", produced)
			}

			// Open-loop, with a duration instead of a count.
			res = bench("produce", "--topic", topic, "--duration", "500ms", "--rate", "2000", "--acks", "1", "--record-size", "normal:200,50")
			checkSide(t, "paced produce", res.Produce, -1, true)
			paced := res.Produce.Records
			if paced < 1 || paced > 1000 {
				t.Errorf("paced produce: %d records in 500ms at 2000/s", paced)
			}

			res = bench("consume", "--topic", topic, "--consumers", "2")
			if res.Mode != "consume" || res.Produce != nil || res.Config.Consumers != 2 || res.Config.Assign != "direct" {
				t.Fatalf("consume: %+v", res)
			}
			checkSide(t, "consume all", res.Consume, 3001+paced, false)

			res = bench("consume", "--topic", topic, "--consumers", "2", "--assign", "group", "--records", "1000")
			if res.Config.Group == "" {
				t.Errorf("consume with a group: no group name in %+v", res.Config)
			}
			checkSide(t, "consume as a group", res.Consume, 1000, false)

			res = bench("e2e", "--topic", topic+"-e2e", "--partitions", "2", "--consumers", "2", "--records", "2000", "--rate", "4000")
			checkSide(t, "e2e produce", res.Produce, 2000, true)
			checkSide(t, "e2e consume", res.Consume, 2000, true)
			if res.Consume.Missing == nil || *res.Consume.Missing != 0 {
				t.Errorf("e2e: missing %v", res.Consume.Missing)
			}

			res = bench("e2e", "--topic", topic+"-e2e", "--consumers", "2", "--assign", "group", "--records", "500", "--producers", "2")
			checkSide(t, "e2e group produce", res.Produce, 500, true)
			checkSide(t, "e2e group consume", res.Consume, 500, true)
		})
	}
}

// TestBenchAgainstAnyKafkaBroker runs the benchmarks over TCP against a
// Kafka-compatible broker that is not Eddy (franz-go's kfake, three
// brokers): the tcp path needs nothing but the Kafka protocol.
func TestBenchAgainstAnyKafkaBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := []string{"--transport", "tcp", "--brokers", strings.Join(c.ListenAddrs(), ",")}
	res := benchJSON(t, append([]string{"produce", "--topic", "k", "--partitions", "6", "--records", "2000", "--producers", "2", "--keys", "10"}, conn...)...)
	checkSide(t, "produce", res.Produce, 2000, true)
	res = benchJSON(t, append([]string{"consume", "--topic", "k", "--consumers", "3"}, conn...)...)
	checkSide(t, "consume", res.Consume, 2000, false)
	res = benchJSON(t, append([]string{"e2e", "--topic", "k", "--records", "500", "--rate", "2000", "--consumers", "2"}, conn...)...)
	checkSide(t, "e2e produce", res.Produce, 500, true)
	checkSide(t, "e2e consume", res.Consume, 500, true)
}

func TestBenchTextOutput(t *testing.T) {
	dir := t.TempDir()
	p := startEddy(t, dir)
	out, err := run(t, "", "bench", "produce", "--brokers", p.kafka, "--transport", "tcp", "--records", "100", "--topic", "text")
	if err != nil {
		t.Fatalf("bench produce: %v\n%s", err, out)
	}
	for _, want := range []string{"eddy bench produce: topic text (1 partitions) over tcp", "produce: 100 records", "latency ms: p50"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "", "bench", "produce", "--brokers", p.kafka, "--transport", "tcp", "--records", "10", "--topic", "text", "--partitions", "4")
	if err == nil || !strings.Contains(out, "--partitions 4: topic text exists with 1 partitions") {
		t.Errorf("a partition count unlike the topic's was accepted: %v\n%s", err, out)
	}
	out, err = run(t, "", "bench", "consume", "--brokers", p.kafka, "--transport", "tcp", "--topic", "absent")
	if err == nil || !strings.Contains(out, "topic absent does not exist") {
		t.Errorf("consume of a missing topic: %v\n%s", err, out)
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"produce", "--records", "5", "--duration", "1s"}, "--records 5 and --duration 1s: give one, not both"},
		{[]string{"produce", "--records", "0"}, "--records 0"},
		{[]string{"produce", "--record-size", "1000-10"}, `--record-size "1000-10": the lower bound is above the upper bound`},
		{[]string{"produce", "--record-size", "normal:1KiB"}, `--record-size "normal:1KiB": want normal:MEAN,STDDEV`},
		{[]string{"produce", "--record-size", "big"}, `--record-size "big"`},
		{[]string{"produce", "--record-size", "2MiB"}, `--record-size "2MiB": records of up to 2097152 bytes do not fit --batch-max-bytes 1000012`},
		{[]string{"produce", "--acks", "2"}, `--acks "2": want all, 1 or 0`},
		{[]string{"produce", "--compression", "lz5"}, `--compression "lz5"`},
		{[]string{"produce", "--transport", "udp"}, `--transport "udp": want quic or tcp`},
		{[]string{"produce", "--producers", "0"}, "--producers 0: want at least 1"},
		{[]string{"produce", "--partitions", "0"}, "--partitions 0: want at least 1"},
		{[]string{"produce", "--rate", "-5"}, "--rate -5"},
		{[]string{"produce", "--keys", "-1"}, "--keys -1"},
		{[]string{"produce", "--payload", "zeros"}, `--payload "zeros": want random or text`},
		{[]string{"produce", "--partitioner", "hash"}, `--partitioner "hash"`},
		{[]string{"produce", "--linger", "-1ms"}, "--linger -1ms"},
		{[]string{"e2e", "--consumers", "0"}, "--consumers 0: want at least 1"},
		{[]string{"consume", "--assign", "random"}, `--assign "random": want direct or group`},
		{[]string{"consume", "--group", "g"}, `--group "g": only with --assign group`},
		{[]string{"consume", "--acks", "1"}, "unknown flag: --acks"},
	} {
		out, err := run(t, "", append([]string{"bench"}, c.args...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("eddy bench %s: %v, output lacks %q:\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	// Several problems are reported together.
	out, err := run(t, "", "bench", "produce", "--acks", "2", "--producers", "0")
	if err == nil || !strings.Contains(out, "--acks") || !strings.Contains(out, "--producers") {
		t.Errorf("not every problem reported: %v\n%s", err, out)
	}
}

func TestParseSizeDist(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		spec       string
		lo, hi     int
		mean, tolr float64
	}{
		{"1024", 1024, 1024, 1024, 0},
		{"1KiB", 1024, 1024, 1024, 0},
		{"0", 0, 0, 0, 0},
		{"100-1000", 100, 1000, 550, 25},
		{"1KiB-4KiB", 1024, 4096, 2560, 80},
		{"normal:1024,256", 0, 1024 + 5*256, 1024, 15},
		{"normal:100,0", 100, 100, 100, 0},
	} {
		d, err := parseSizeDist(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if d.max() != c.hi || d.String() != c.spec {
			t.Errorf("%s: max %d, string %q", c.spec, d.max(), d.String())
		}
		sum := 0
		const n = 20000
		for i := 0; i < n; i++ {
			v := d.next(rng)
			if v < c.lo || v > c.hi {
				t.Fatalf("%s: drew %d outside [%d, %d]", c.spec, v, c.lo, c.hi)
			}
			sum += v
		}
		if mean := float64(sum) / n; mean < c.mean-c.tolr || mean > c.mean+c.tolr {
			t.Errorf("%s: mean %.1f, want %.0f±%.0f", c.spec, mean, c.mean, c.tolr)
		}
	}
	for _, bad := range []string{"", "-5", "x", "10-", "5-1", "normal:", "normal:0,1", "normal:10,x", "65MiB", "1.5KiB"} {
		if _, err := parseSizeDist(bad); err == nil || !strings.Contains(err.Error(), "--record-size") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestPayloadValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kind := range []string{"random", "text"} {
		p, err := newPayload(kind, 4096, rng)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{0, 1, 4096} {
			if v := p.value(size, rng); len(v) != size || cap(v) != size {
				t.Errorf("%s: value of %d bytes has len %d cap %d", kind, size, len(v), cap(v))
			}
		}
	}
	if _, err := newPayload("zeros", 10, rng); err == nil {
		t.Error("payload zeros accepted")
	}
}
