package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/corpus")

// A corpus case: an input (a batch or segment metas) run through one or
// more plugins that must all give the golden output.
type corpusCase struct {
	Plugins  []string        `json:"plugins"`
	Kind     string          `json:"kind"` // partition, transform, cleanup-records, cleanup-segment
	Stage    string          `json:"stage"`
	Config   *string         `json:"config"`
	Batch    corpusBatch     `json:"batch"`
	Segments []corpusSegment `json:"segments"`
}

type corpusBatch struct {
	Topic          string         `json:"topic"`
	PartitionCount int32          `json:"partition_count"`
	Partition      int32          `json:"partition"`
	Assigned       bool           `json:"assigned"`
	BaseOffset     int64          `json:"base_offset"`
	NowMs          int64          `json:"now_ms"`
	Records        []corpusRecord `json:"records"`
}

type corpusRecord struct {
	Key     *string     `json:"key"`
	Value   *string     `json:"value"`
	Headers [][]*string `json:"headers"`
	Ts      int64       `json:"ts"`
	Latest  bool        `json:"latest"`
}

type corpusSegment struct {
	BaseOffset     int64  `json:"base_offset"`
	LastOffset     int64  `json:"last_offset"`
	MinTimestamp   int64  `json:"min_timestamp"`
	MaxTimestamp   int64  `json:"max_timestamp"`
	SizeBytes      int64  `json:"size_bytes"`
	RecordCount    uint32 `json:"record_count"`
	Flags          uint32 `json:"flags"`
	NowMs          int64  `json:"now_ms"`
	PartitionSize  int64  `json:"partition_size_bytes"`
	LogStartOffset int64  `json:"log_start_offset"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
	FederatedUpto  int64  `json:"federated_upto"`
}

// corpusOut is the golden output.
type corpusOut struct {
	Partitions []int32        `json:"partitions,omitempty"`
	Decisions  []string       `json:"decisions,omitempty"`
	Outputs    []corpusOutput `json:"outputs,omitempty"`
	Message    string         `json:"message,omitempty"`
	Keep       []string       `json:"keep,omitempty"`
	Segments   []string       `json:"segments,omitempty"`
}

type corpusOutput struct {
	Source  int         `json:"source"`
	Route   int         `json:"route"`
	Key     *string     `json:"key"`
	Value   *string     `json:"value"`
	Ts      int64       `json:"ts"`
	Headers [][]*string `json:"headers,omitempty"`
}

func str(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func byt(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}

func (b corpusBatch) batch() plugintest.Batch {
	out := plugintest.Batch{Topic: b.Topic, PartitionCount: b.PartitionCount, Partition: b.Partition, Assigned: b.Assigned, BaseOffset: b.BaseOffset, NowMs: b.NowMs}
	for _, r := range b.Records {
		rec := plugintest.Rec{Key: byt(r.Key), Value: byt(r.Value), Timestamp: r.Ts, Latest: r.Latest}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, plugintest.Header{Key: *h[0], Value: byt(h[1])})
		}
		out.Records = append(out.Records, rec)
	}
	return out
}

var stages = map[string]abi.Stage{"": abi.StageProduce, "produce": abi.StageProduce, "fetch": abi.StageFetch, "federate": abi.StageFederate}

// asPlugin returns the AssemblyScript example name: built with npm when
// node is installed (and then checked against the committed copy, so the
// copy cannot go stale), else the committed build.
func asPlugin(t *testing.T, name string) string {
	committed := filepath.Join("testdata", name+".wasm")
	path, err := plugintest.BuildAssemblyScript(name, filepath.Join("build", name+".wasm"))
	if errors.Is(err, plugintest.ErrNoNode) {
		t.Logf("npm is not installed: using the committed %s", committed)
		return committed
	}
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(committed)
	if err != nil && !*update {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, old) {
		if *update {
			if err := os.WriteFile(committed, fresh, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Fatalf("%s differs from a fresh build of %s; run go test -update", committed, name)
		}
	}
	return path
}

func wasmFor(t *testing.T, name string) string {
	if strings.HasPrefix(name, "as-") {
		return asPlugin(t, name)
	}
	return plugintest.BuildGo(t, name)
}

// golden compares got with the file, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file:\ngot  %s\nwant %s", path, got, want)
	}
}

func TestConformanceCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".out.json") {
			cases = append(cases, f)
		}
	}
	if len(cases) < 8 {
		t.Fatalf("found %d corpus cases", len(cases))
	}
	covered := map[string]bool{}
	for _, f := range cases {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c corpusCase
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
			base := strings.TrimSuffix(f, ".json")
			// The golden input, byte for byte.
			var input []byte
			if c.Kind == "cleanup-segment" {
				for _, s := range c.Segments {
					input = append(input, s.meta().Encode()...)
				}
				golden(t, base+".meta", input)
			} else {
				stage := abi.StagePartition
				switch c.Kind {
				case "transform":
					stage = stages[c.Stage]
				case "cleanup-records":
					stage = abi.StageCleanup
				}
				b := c.Batch.batch()
				if stage == abi.StageCleanup {
					b.Assigned = true
				}
				input, err = b.Encode(stage).Encode()
				if err != nil {
					t.Fatal(err)
				}
				golden(t, base+".rbv1", input)
			}
			var first []byte
			for _, name := range c.Plugins {
				covered[name] = true
				out := runCase(t, plugintest.Load(t, wasmFor(t, name)), c)
				got, err := json.MarshalIndent(out, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, '\n')
				if first == nil {
					first = got
					golden(t, base+".out.json", got)
				} else if !bytes.Equal(got, first) {
					t.Fatalf("%s disagrees with %s:\n%s\nvs\n%s", name, c.Plugins[0], got, first)
				}
				if c.Kind == "partition" {
					checkKafka(t, c.Batch, out.Partitions)
				}
			}
		})
	}
	for _, p := range []string{"murmur2", "as-murmur2", "jsonfield", "filter", "as-filter", "cleanup"} {
		if !covered[p] {
			t.Errorf("no corpus case runs %s", p)
		}
	}
}

// checkKafka verifies murmur2 cases against Kafka's partitioner directly.
func checkKafka(t *testing.T, b corpusBatch, got []int32) {
	if b.Topic == "telemetry" || b.Topic == "billing" {
		return // jsonfield cases hash a field, not the key
	}
	for i, r := range b.Records {
		want := int32(-1)
		if r.Key != nil {
			want = abi.KafkaPartition([]byte(*r.Key), b.PartitionCount)
		}
		if got[i] != want {
			t.Errorf("record %d (key %v): partition %d, Kafka's partitioner says %d", i, r.Key, got[i], want)
		}
	}
}

func (s corpusSegment) meta() abi.SegmentMeta {
	return abi.SegmentMeta{BaseOffset: s.BaseOffset, LastOffset: s.LastOffset, MinTimestamp: s.MinTimestamp, MaxTimestamp: s.MaxTimestamp,
		SizeBytes: s.SizeBytes, RecordCount: s.RecordCount, Flags: s.Flags, NowMs: s.NowMs, PartitionSizeBytes: s.PartitionSize,
		LogStartOffset: s.LogStartOffset, RetentionMs: s.RetentionMs, RetentionBytes: s.RetentionBytes, FederatedUpto: s.FederatedUpto}
}

func runCase(t *testing.T, p *plugintest.Plugin, c corpusCase) corpusOut {
	var cfg []byte
	if c.Config != nil {
		cfg = []byte(*c.Config)
	}
	var out corpusOut
	switch c.Kind {
	case "partition":
		parts, err := p.Partition(c.Batch.batch(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		out.Partitions = parts
	case "transform":
		res, err := p.Transform(stages[c.Stage], c.Batch.batch(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range res.Decisions {
			out.Decisions = append(out.Decisions, d.String())
		}
		for _, o := range res.Outputs {
			co := corpusOutput{Source: o.Source, Route: o.Route, Key: str(o.Key), Value: str(o.Value), Ts: o.Timestamp}
			for _, h := range o.Headers {
				k := h.Key
				co.Headers = append(co.Headers, []*string{&k, str(h.Value)})
			}
			out.Outputs = append(out.Outputs, co)
		}
		out.Message = res.Message
	case "cleanup-records":
		keep, err := p.CleanupRecords(c.Batch.batch(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keep {
			out.Keep = append(out.Keep, k.String())
		}
	case "cleanup-segment":
		for _, s := range c.Segments {
			d, err := p.CleanupSegment(s.meta(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			out.Segments = append(out.Segments, d.String())
		}
	default:
		t.Fatalf("unknown kind %q", c.Kind)
	}
	if reflect.DeepEqual(out, corpusOut{}) {
		t.Fatal("the case produced no output")
	}
	return out
}
