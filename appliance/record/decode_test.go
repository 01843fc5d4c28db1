package record

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func encodeRecord(r kmsg.Record) []byte {
	body := r.AppendTo(nil)[1:] // with Length 0 the prefix is one byte
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

func sameRecord(a, b *kmsg.Record) bool {
	if a.Length != b.Length || a.Attributes != b.Attributes || a.TimestampDelta64 != b.TimestampDelta64 ||
		a.OffsetDelta != b.OffsetDelta || !bytes.Equal(a.Key, b.Key) || (a.Key == nil) != (b.Key == nil) ||
		!bytes.Equal(a.Value, b.Value) || (a.Value == nil) != (b.Value == nil) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		ha, hb := a.Headers[i], b.Headers[i]
		if ha.Key != hb.Key || !bytes.Equal(ha.Value, hb.Value) || (ha.Value == nil) != (hb.Value == nil) {
			return false
		}
	}
	return true
}

var decodeSeeds = []kmsg.Record{
	{Key: []byte("k"), Value: []byte("v")},
	{Value: []byte("no key"), TimestampDelta64: -5, OffsetDelta: 3},
	{Key: []byte("tombstone")},
	{Key: []byte{}, Value: []byte{}, Attributes: 1},
	{Key: bytes.Repeat([]byte("k"), 300), Value: bytes.Repeat([]byte("v"), 70000), TimestampDelta64: math.MaxInt64, OffsetDelta: math.MaxInt32},
	{Value: []byte("h"), Headers: []kmsg.Header{{Key: "a", Value: []byte("1")}, {Key: "", Value: nil}, {Key: "null", Value: []byte{}}}},
	{TimestampDelta64: math.MinInt64, OffsetDelta: math.MinInt32},
}

// TestDecodeRecordMatchesKmsg decodes records kmsg encoded and expects
// every field back, and the exact size consumed from a stream of records.
func TestDecodeRecordMatchesKmsg(t *testing.T) {
	var stream []byte
	for _, want := range decodeSeeds {
		stream = append(stream, encodeRecord(want)...)
	}
	var got kmsg.Record
	for i, want := range decodeSeeds {
		enc := encodeRecord(want)
		var ref kmsg.Record
		if err := ref.UnsafeReadFrom(enc); err != nil {
			t.Fatal(err)
		}
		n, err := DecodeRecord(stream, &got)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if n != len(enc) || !sameRecord(&got, &ref) {
			t.Fatalf("record %d: decoded %+v (%d bytes), want %+v (%d bytes)", i, got, n, ref, len(enc))
		}
		stream = stream[n:]
	}
}

// TestDecodeRecordRefusesMalformed names the field that is wrong, for
// records that Kafka refuses.
func TestDecodeRecordRefusesMalformed(t *testing.T) {
	good := encodeRecord(kmsg.Record{Key: []byte("key"), Value: []byte("value"), Headers: []kmsg.Header{{Key: "h", Value: []byte("v")}}})
	body := func(fields ...[]byte) []byte {
		b := bytes.Join(fields, nil)
		return append(binary.AppendVarint(nil, int64(len(b))), b...)
	}
	v := func(x int64) []byte { return binary.AppendVarint(nil, x) }
	for _, c := range []struct {
		name, want string
		src        []byte
	}{
		{"empty", "length", nil},
		{"length past the end", "runs past", good[:len(good)-1]},
		{"negative length", "length -1", v(-1)},
		{"overlong varint", "malformed varint", bytes.Repeat([]byte{0xff}, 11)},
		{"no attributes", "attributes", body()},
		{"key past the record", "key", body([]byte{0}, v(0), v(0), v(10), []byte("abc"))},
		{"value past the record", "value", body([]byte{0}, v(0), v(0), v(-1), v(4), []byte("abc"))},
		{"negative header count", "header count -1", body([]byte{0}, v(0), v(0), v(-1), v(-1), v(-1))},
		{"header count past the bytes", "header count 5", body([]byte{0}, v(0), v(0), v(-1), v(-1), v(5), []byte{0, 0})},
		{"negative header key", "header 0 key", body([]byte{0}, v(0), v(0), v(-1), v(-1), v(1), v(-1), v(-1))},
		{"trailing bytes", "after the last header", body([]byte{0}, v(0), v(0), v(-1), v(-1), v(0), []byte("x"))},
		{"offset delta over 32 bits", "offset delta", body([]byte{0}, v(0), v(1<<40), v(-1), v(-1), v(0))},
		// -1 in six bytes: Kafka and kmsg read at most five for 32 bits.
		{"overlong key length", "key length: malformed varint", body([]byte{0}, v(0), v(0), []byte{0x81, 0x80, 0x80, 0x80, 0x80, 0x00}, v(-1), v(0))},
	} {
		var r kmsg.Record
		_, err := DecodeRecord(c.src, &r)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: got %v, want an error naming %q", c.name, err, c.want)
		}
	}
}

// FuzzDecodeRecord checks the decoder against kmsg's: whatever it accepts,
// kmsg accepts with the same fields, and it never reads past src.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range decodeSeeds {
		f.Add(encodeRecord(r))
	}
	f.Add([]byte{0x16, 0, 0, 0, 0x81, 0x80, 0x80, 0x80, 0x80, 0, 1, 0})
	f.Fuzz(func(t *testing.T, src []byte) {
		var got kmsg.Record
		n, err := DecodeRecord(src, &got)
		if err != nil {
			return
		}
		if n <= 0 || n > len(src) {
			t.Fatalf("consumed %d of %d bytes", n, len(src))
		}
		var ref kmsg.Record
		if err := ref.UnsafeReadFrom(src[:n]); err != nil {
			t.Fatalf("accepted a record kmsg refuses: %v", err)
		}
		if !sameRecord(&got, &ref) {
			t.Fatalf("decoded %+v, kmsg %+v", got, ref)
		}
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	var stream []byte
	for i := range 1000 {
		stream = append(stream, encodeRecord(kmsg.Record{Key: []byte("device-00000000"), Value: bytes.Repeat([]byte("v"), 100), OffsetDelta: int32(i)})...)
	}
	b.Run("eddy", func(b *testing.B) {
		var r kmsg.Record
		for b.Loop() {
			for s := stream; len(s) > 0; {
				n, err := DecodeRecord(s, &r)
				if err != nil {
					b.Fatal(err)
				}
				s = s[n:]
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
	})
	b.Run("fields", func(b *testing.B) {
		var f Fields
		for b.Loop() {
			for at := 0; at < len(stream); at = f.End {
				if err := DecodeFields(stream, at, &f); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
	})
	b.Run("kmsg", func(b *testing.B) {
		var r kmsg.Record
		for b.Loop() {
			for s := stream; len(s) > 0; {
				l, k := binary.Varint(s)
				if err := r.UnsafeReadFrom(s[:k+int(l)]); err != nil {
					b.Fatal(err)
				}
				s = s[k+int(l):]
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
	})
}

// TestAppendRecordMatchesKmsg encodes records byte for byte as kmsg does.
func TestAppendRecordMatchesKmsg(t *testing.T) {
	for i, r := range decodeSeeds {
		r.Attributes = 0
		want := encodeRecord(r)
		got := AppendRecord([]byte("prefix"), r.TimestampDelta64, r.OffsetDelta, r.Key, r.Value, r.Headers)
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("record %d: encoded\n%x\nwant\n%x", i, got[len("prefix"):], want)
		}
	}
}
