//go:build !wasip1

package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/plugins/abi"
)

func reset(t *testing.T) {
	t.Helper()
	old := handlers
	handlers.partition, handlers.transform, handlers.segment, handlers.records = nil, nil, nil, nil
	handlers.cleanup, handlers.onInit, handlers.config = false, nil, nil
	native.output, native.errCode, native.errMsg, native.logs = nil, 0, nil, nil
	t.Cleanup(func() { handlers = old })
}

type rec struct {
	key, value string
	nullKey    bool
	headers    []abi.KV
	ts         int64
	attrs      uint32
}

func input(stage abi.Stage, n uint32, recs ...rec) []byte {
	var e abi.Encoder
	e.Reset(abi.Header{Stage: stage, Flags: abi.FlagHeaders | abi.FlagOffsetsAssigned, Topic: []byte("t"), Partition: 3, PartitionCount: n, BaseOffset: 100, NowMs: 5000})
	for i, r := range recs {
		var k []byte
		if !r.nullKey {
			k = []byte(r.key)
		}
		e.Add(abi.Entry{OffsetDelta: uint32(i), Timestamp: r.ts, Attrs: r.attrs, Key: k, Value: []byte(r.value), Headers: r.headers, SourceIndex: uint32(i)})
	}
	b, err := e.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

func outBuf(dst *[]byte) func(int) []byte {
	return func(n int) []byte { *dst = make([]byte, n); return *dst }
}

func TestPartitionDispatch(t *testing.T) {
	reset(t)
	Partitioner(func(r Record, n int32) (int32, error) {
		if r.Key() == nil {
			return RejectRecord, nil
		}
		if r.Batch().Topic() != "t" || r.Batch().Partition() != 3 || r.Batch().NowMs() != 5000 || r.Offset() != 100+int64(r.Index()) {
			return 0, fmt.Errorf("batch fields wrong")
		}
		return KafkaPartition(r.Key(), n), nil
	})
	if kinds() != uint32(abi.KindPartitioner) {
		t.Fatalf("kinds = %d", kinds())
	}
	var out []byte
	st := doPartition(input(abi.StagePartition, 12, rec{key: "foobar"}, rec{nullKey: true}, rec{key: "21"}), outBuf(&out))
	if st != 3 {
		t.Fatalf("status %d, error %q", st, native.errMsg)
	}
	want := []int32{abi.KafkaPartition([]byte("foobar"), 12), RejectRecord, abi.KafkaPartition([]byte("21"), 12)}
	for i, w := range want {
		if got := int32(le.Uint32(out[4*i:])); got != w {
			t.Errorf("record %d: partition %d, want %d", i, got, w)
		}
	}
}

func TestPanicBecomesPluginError(t *testing.T) {
	reset(t)
	Partitioner(func(r Record, n int32) (int32, error) { panic("plugin bug") })
	var out []byte
	if st := doPartition(input(abi.StagePartition, 2, rec{key: "a"}), outBuf(&out)); st != int32(abi.StatusPlugin) {
		t.Fatalf("status %d, want ERR_PLUGIN", st)
	}
	if native.errCode != CodePanic || !strings.Contains(string(native.errMsg), "plugin bug") {
		t.Fatalf("set_error(%d, %q)", native.errCode, native.errMsg)
	}
}

type codedErr struct{}

func (codedErr) Error() string     { return "coded" }
func (codedErr) ErrorCode() uint32 { return 77 }

func TestErrorStatuses(t *testing.T) {
	cases := []struct {
		err  error
		want abi.Status
		code uint32
	}{
		{errors.New("boom"), abi.StatusPlugin, CodeError},
		{fmt.Errorf("later: %w", ErrRetry), abi.StatusRetry, CodeError},
		{fmt.Errorf("x: %w", codedErr{}), abi.StatusPlugin, 77},
	}
	for _, c := range cases {
		reset(t)
		Partitioner(func(r Record, n int32) (int32, error) { return 0, c.err })
		var out []byte
		if st := doPartition(input(abi.StagePartition, 2, rec{key: "a"}), outBuf(&out)); st != int32(c.want) {
			t.Errorf("%v: status %d, want %v", c.err, st, c.want)
		}
		if native.errCode != c.code {
			t.Errorf("%v: code %d, want %d", c.err, native.errCode, c.code)
		}
	}
	reset(t)
	var out []byte
	if st := doPartition(input(abi.StagePartition, 2, rec{key: "a"}), outBuf(&out)); st != int32(abi.StatusPlugin) {
		t.Fatalf("no partitioner registered: status %d", st)
	}
	Partitioner(func(r Record, n int32) (int32, error) { return 0, nil })
	if st := doPartition([]byte("garbage"), outBuf(&out)); st != int32(abi.StatusInput) {
		t.Fatalf("garbage input: status %d, want ERR_INPUT", st)
	}
}

func TestInitConfig(t *testing.T) {
	reset(t)
	var got string
	OnInit(func(cfg []byte) error {
		got = string(cfg)
		if got == "bad" {
			return errors.New("field missing")
		}
		return nil
	})
	if st := doInit([]byte(`{"field":"x"}`)); st != 0 || got != `{"field":"x"}` || string(Config()) != got {
		t.Fatalf("init status %d, config %q", st, got)
	}
	if st := doInit([]byte("bad")); st != int32(abi.StatusConfig) || !strings.Contains(string(native.errMsg), "field missing") {
		t.Fatalf("bad config: status %d, message %q", st, native.errMsg)
	}
}

func TestTransformDispatch(t *testing.T) {
	reset(t)
	Transform(func(r Record, w *Writer) (Decision, error) {
		if v, ok := r.Header("drop"); ok && string(v) == "yes" {
			return Drop, nil
		}
		switch string(r.Key()) {
		case "redact":
			o := r.Output()
			o.Value, _ = JSONReplace(o.Value, "card", []byte(`"***"`))
			w.Write(o)
			return Replace, nil
		case "fan":
			w.Write(Output{Key: []byte("copy"), Value: r.Value(), Timestamp: 9, Route: 1})
			return Keep, nil
		}
		return Keep, nil
	})
	in := input(abi.StageProduce, 1,
		rec{key: "a", value: "1", headers: []abi.KV{{Key: []byte("drop"), Value: []byte("yes")}}},
		rec{key: "redact", value: `{"card":"4111","n":1}`, ts: 7, headers: []abi.KV{{Key: []byte("h"), Value: []byte("v")}}},
		rec{key: "fan", value: "f"},
		rec{key: "plain", value: "p"},
	)
	var out []byte
	if st := doTransform(in, outBuf(&out)); st != 4 {
		t.Fatalf("status %d: %q", st, native.errMsg)
	}
	if want := []byte{byte(Drop), byte(Replace), byte(Keep), byte(Keep)}; !bytes.Equal(out, want) {
		t.Fatalf("decisions %v, want %v", out, want)
	}
	v, err := abi.Open(native.output)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(); err != nil || v.Len() != 2 {
		t.Fatalf("output: %d records, %v", v.Len(), err)
	}
	r0, r1 := v.Record(0), v.Record(1)
	if r0.SourceIndex() != 1 || string(r0.Value()) != `{"card":"***","n":1}` || r0.Timestamp() != 7 || r0.HeaderCount() != 1 {
		t.Fatalf("replacement = src %d value %q ts %d", r0.SourceIndex(), r0.Value(), r0.Timestamp())
	}
	if r1.SourceIndex() != 2 || r1.Route() != 1 || string(r1.Key()) != "copy" {
		t.Fatalf("fan-out = src %d route %d key %q", r1.SourceIndex(), r1.Route(), r1.Key())
	}

	reset(t)
	Transform(func(r Record, w *Writer) (Decision, error) { return Replace, nil })
	if st := doTransform(in, outBuf(&out)); st != int32(abi.StatusPlugin) {
		t.Fatalf("Replace without output: status %d", st)
	}
}

func TestCleanupDispatch(t *testing.T) {
	reset(t)
	Cleanup(func(m SegmentMeta) (SegmentDecision, error) {
		if m.MaxTimestamp < m.NowMs-1000 {
			return SegmentRewrite, nil
		}
		return SegmentDefault, nil
	}, func(r Record) (KeepDecision, error) {
		if r.IsLatestForKey() {
			return CleanupKeep, nil
		}
		if r.IsTombstone() {
			return CleanupDrop, nil
		}
		return CleanupDefault, nil
	})
	if kinds() != uint32(abi.KindCleanup) {
		t.Fatalf("kinds = %d", kinds())
	}
	if st := doCleanupSegment(abi.SegmentMeta{MaxTimestamp: 1, NowMs: 5000}.Encode()); st != int32(SegmentRewrite) {
		t.Fatalf("segment status %d", st)
	}
	if st := doCleanupSegment(abi.SegmentMeta{MaxTimestamp: 4500, NowMs: 5000}.Encode()); st != int32(SegmentDefault) {
		t.Fatalf("segment status %d", st)
	}
	if st := doCleanupSegment(make([]byte, 10)); st != int32(abi.StatusInput) {
		t.Fatalf("short meta status %d", st)
	}
	var e abi.Encoder
	e.Reset(abi.Header{Stage: abi.StageCleanup, Flags: abi.FlagOffsetsAssigned, BaseOffset: 0})
	e.Add(abi.Entry{Key: []byte("a"), Value: []byte("1"), Attrs: abi.AttrLatestForKey})
	e.Add(abi.Entry{Key: []byte("b"), Value: nil, Attrs: abi.AttrTombstone})
	e.Add(abi.Entry{Key: []byte("c"), Value: []byte("3")})
	in, _ := e.Encode()
	var out []byte
	if st := doCleanupRecords(in, outBuf(&out)); st != 3 {
		t.Fatalf("records status %d: %q", st, native.errMsg)
	}
	if want := []byte{byte(CleanupKeep), byte(CleanupDrop), byte(CleanupDefault)}; !bytes.Equal(out, want) {
		t.Fatalf("records = %v, want %v", out, want)
	}
}

func TestLog(t *testing.T) {
	reset(t)
	Logf(LevelWarn, "n=%d", 3)
	if len(native.logs) != 1 || native.logs[0] != "warn: n=3" {
		t.Fatalf("logs = %q", native.logs)
	}
}
