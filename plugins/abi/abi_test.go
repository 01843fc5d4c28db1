package abi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// Kafka's UtilsTest.testMurmur2 vectors.
var murmur2Vectors = []struct {
	in   string
	want int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
}

func TestMurmur2KafkaVectors(t *testing.T) {
	for _, c := range murmur2Vectors {
		if got := Murmur2([]byte(c.in)); got != c.want {
			t.Errorf("Murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestKafkaPartition(t *testing.T) {
	for _, c := range murmur2Vectors {
		for _, n := range []int32{1, 3, 12, 100} {
			want := int32(uint32(c.want)&0x7fffffff) % n
			if got := KafkaPartition([]byte(c.in), n); got != want {
				t.Errorf("KafkaPartition(%q, %d) = %d, want %d", c.in, n, got, want)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	v := MakeVersion(1, 7)
	if v.Major() != 1 || v.Minor() != 7 || v.String() != "1.7" {
		t.Fatalf("MakeVersion(1, 7) = %v (%d.%d)", v, v.Major(), v.Minor())
	}
	if !CurrentVersion.Compatible() {
		t.Fatal("the current version is not compatible with itself")
	}
	if MakeVersion(2, 0).Compatible() || MakeVersion(0, 9).Compatible() || MakeVersion(1, Minor+1).Compatible() {
		t.Fatal("a foreign major or a newer minor was accepted")
	}
}

func sampleEncoder() *Encoder {
	var e Encoder
	e.Reset(Header{Stage: StageProduce, Flags: FlagHeaders, Topic: []byte("orders"), Partition: Unassigned, PartitionCount: 12, BaseOffset: -1, NowMs: 1_700_000_000_000})
	e.Add(Entry{OffsetDelta: 0, Timestamp: 10, Key: []byte("k1"), Value: []byte(`{"a":1}`), Headers: []KV{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n"), Value: nil}}, SourceIndex: 0})
	e.Add(Entry{OffsetDelta: 1, Timestamp: 11, Key: nil, Value: nil, Attrs: AttrTombstone, SourceIndex: 1, Route: 2})
	e.Add(Entry{OffsetDelta: 2, Timestamp: 12, Key: []byte{}, Value: []byte("x"), SourceIndex: 2})
	return &e
}

func TestEncodeOpenRoundTrip(t *testing.T) {
	e := sampleEncoder()
	buf, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(buf) != e.Size() {
		t.Fatalf("encoded %d bytes, Size says %d", len(buf), e.Size())
	}
	v, err := Open(buf)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := v.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if v.Len() != 3 || v.Stage() != StageProduce || string(v.Topic()) != "orders" || v.Partition() != Unassigned ||
		v.PartitionCount() != 12 || v.BaseOffset() != -1 || v.NowMs() != 1_700_000_000_000 || v.Flags() != FlagHeaders ||
		v.HeaderSize() != HeaderSize || v.ABIMinor() != Minor {
		t.Fatalf("header fields differ: len %d stage %v topic %q", v.Len(), v.Stage(), v.Topic())
	}
	r0 := v.Record(0)
	if string(r0.Key()) != "k1" || string(r0.Value()) != `{"a":1}` || r0.Timestamp() != 10 || r0.HeaderCount() != 2 {
		t.Fatalf("record 0 = key %q value %q ts %d headers %d", r0.Key(), r0.Value(), r0.Timestamp(), r0.HeaderCount())
	}
	if k, val := r0.Header(0); string(k) != "h" || string(val) != "v" {
		t.Fatalf("header 0 = %q:%q", k, val)
	}
	if k, val := r0.Header(1); string(k) != "n" || val != nil {
		t.Fatalf("header 1 = %q:%v, want a null value", k, val)
	}
	r1 := v.Record(1)
	if r1.Key() != nil || r1.Value() != nil || !r1.KeyIsNull() || !r1.ValueIsNull() || r1.Attrs() != AttrTombstone || r1.Route() != 2 || r1.SourceIndex() != 1 || r1.OffsetDelta() != 1 {
		t.Fatalf("record 1: nulls or fields lost")
	}
	r2 := v.Record(2)
	if r2.Key() == nil || len(r2.Key()) != 0 || r2.KeyIsNull() || string(r2.Value()) != "x" || r2.HeaderCount() != 0 {
		t.Fatalf("record 2: an empty key must stay empty, not null")
	}
	// Reusing dirty memory gives the same bytes.
	dirty := bytes.Repeat([]byte{0xAB}, e.Size()+16)
	if got := e.EncodeInto(dirty); !bytes.Equal(got, buf) {
		t.Fatal("EncodeInto over dirty memory differs from Encode")
	}
}

func TestOpenRejects(t *testing.T) {
	good, _ := sampleEncoder().Encode()
	mutate := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good...)
		return f(b)
	}
	cases := map[string][]byte{
		"short":         good[:10],
		"magic":         mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"total_len":     mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[52:], 7); return b }),
		"header_size":   mutate(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[4:], 8); return b }),
		"record_count":  mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 1<<30); return b }),
		"records_off":   mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[48:], 4); return b }),
		"truncated tbl": mutate(func(b []byte) []byte { return b[:HeaderSize+RecordSize] }),
	}
	for name, b := range cases {
		if _, err := Open(b); !errors.Is(err, ErrLayout) {
			t.Errorf("%s: Open = %v, want ErrLayout", name, err)
		}
	}
}

func TestValidateRejectsOutOfBounds(t *testing.T) {
	good, _ := sampleEncoder().Encode()
	at := func(field int) []byte {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(b[HeaderSize+field:], uint32(len(b)))
		return b
	}
	cases := map[string][]byte{
		"key":     at(recKeyLen),
		"value":   at(recValueLen),
		"headers": at(recHeadersCount),
		"topic_len": func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[20:], 1<<31)
			return b
		}(),
		"header kv": func() []byte {
			b := append([]byte(nil), good...)
			h := binary.LittleEndian.Uint32(b[HeaderSize+recHeadersOff:])
			binary.LittleEndian.PutUint32(b[h+12:], 1<<20)
			return b
		}(),
	}
	for name, b := range cases {
		v, err := Open(b)
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		if err := v.Validate(); !errors.Is(err, ErrLayout) {
			t.Errorf("%s: Validate = %v, want ErrLayout", name, err)
		}
	}
}

func TestSegmentMetaRoundTrip(t *testing.T) {
	m := SegmentMeta{BaseOffset: 100, LastOffset: 199, MinTimestamp: 1, MaxTimestamp: 2, SizeBytes: 4096, RecordCount: 100,
		Flags: SegmentHasTombstones, NowMs: 99, PartitionSizeBytes: 1 << 30, LogStartOffset: 5, RetentionMs: -1, RetentionBytes: -1, FederatedUpto: 150}
	b := m.Encode()
	if len(b) != SegmentMetaSize {
		t.Fatalf("encoded %d bytes", len(b))
	}
	got, err := DecodeSegmentMeta(append(b, 1, 2, 3)) // a longer (newer) meta still decodes
	if err != nil || got != m {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if m.Active() || !(SegmentMeta{Flags: SegmentActive}).Active() {
		t.Fatal("Active flag misread")
	}
	if _, err := DecodeSegmentMeta(b[:95]); !errors.Is(err, ErrLayout) {
		t.Fatalf("short meta: %v", err)
	}
}

func TestCodeNames(t *testing.T) {
	checks := map[string]string{
		StatusPlugin.String(): "ERR_PLUGIN", StatusRetry.String(): "ERR_RETRY", Status(3).String(): "ok(3)",
		Replaced.String(): "replaced", SegmentRewrite.String(): "rewrite", CleanupDrop.String(): "drop",
		(KindPartitioner | KindCleanup).String(): "partitioner,cleanup", StageFederate.String(): "federate",
	}
	for got, want := range checks {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if Decision(4).Valid() || !Reject.Valid() || SegmentDecision(4).Valid() || KeepDecision(3).Valid() {
		t.Error("validity of codes is wrong")
	}
}

// FuzzOpenValidate checks that a buffer accepted by Open and Validate can
// be read through every accessor without a panic.
func FuzzOpenValidate(f *testing.F) {
	good, _ := sampleEncoder().Encode()
	f.Add(good)
	f.Add(good[:HeaderSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Open(b)
		if err != nil {
			return
		}
		if v.Validate() != nil {
			return
		}
		_ = v.Topic()
		for i := 0; i < v.Len(); i++ {
			r := v.Record(i)
			_, _, _ = r.Key(), r.Value(), r.Timestamp()
			for j := 0; j < r.HeaderCount(); j++ {
				_, _ = r.Header(j)
			}
		}
	})
}
