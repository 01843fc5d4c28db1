package record

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func sampleRecords(n int) []Simple {
	recs := make([]Simple, n)
	for i := range recs {
		recs[i] = Simple{
			Key:            []byte(fmt.Sprintf("key-%d", i)),
			Value:          bytes.Repeat([]byte{byte('a' + i%26)}, 100+i),
			Headers:        []kmsg.Header{{Key: "h", Value: []byte{byte(i)}}},
			TimestampDelta: int64(i * 10),
		}
	}
	return recs
}

func TestBuildValidateIterateAllCodecs(t *testing.T) {
	for _, c := range []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
		t.Run(c.String(), func(t *testing.T) {
			recs := sampleRecords(50)
			raw, err := Build(BatchOptions{Codec: c, BaseTimestamp: 1_700_000_000_000, ProducerID: 7, ProducerEpoch: 1, BaseSequence: 3}, recs)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Validate(raw, ValidateOptions{Records: true})
			if err != nil {
				t.Fatalf("validate: %v", err)
			}
			if b.Codec() != c || b.RecordCount() != 50 || b.LastOffsetDelta() != 49 {
				t.Fatalf("header: codec %v count %d delta %d", b.Codec(), b.RecordCount(), b.LastOffsetDelta())
			}
			if b.MaxTimestamp() != 1_700_000_000_000+490 {
				t.Fatalf("max timestamp %d", b.MaxTimestamp())
			}
			if b.LastSequence() != 52 {
				t.Fatalf("last sequence %d", b.LastSequence())
			}
			b.SetBaseOffset(1000)
			b.SetLeaderEpoch(9)
			if _, err := Check(b); err != nil {
				t.Fatalf("patching offset and epoch must keep the CRC valid: %v", err)
			}
			i := 0
			err = b.EachRecord(0, func(r *Record) error {
				want := recs[i]
				if r.Offset != int64(1000+i) || !bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) ||
					r.Timestamp != 1_700_000_000_000+int64(i*10) || len(r.Headers) != 1 || r.Headers[0].Value[0] != byte(i) {
					return fmt.Errorf("record %d decoded wrong: offset %d key %q", i, r.Offset, r.Key)
				}
				i++
				return nil
			})
			if err != nil || i != 50 {
				t.Fatalf("iterate: %v after %d records", err, i)
			}
		})
	}
}

func TestXerialSnappy(t *testing.T) {
	recs := sampleRecords(20)
	plain, _ := Build(BatchOptions{}, recs)
	raw := Batch(plain).Records()
	// Frame as the Java client does: magic, versions, then length-prefixed blocks.
	framed := append([]byte(nil), xerialMagic...)
	framed = append(framed, 0, 0, 0, 1, 0, 0, 0, 1)
	half := len(raw) / 2
	for _, part := range [][]byte{raw[:half], raw[half:]} {
		blk, _ := Compress(CodecSnappy, part)
		framed = append(framed, byte(len(blk)>>24), byte(len(blk)>>16), byte(len(blk)>>8), byte(len(blk)))
		framed = append(framed, blk...)
	}
	out, err := Decompress(CodecSnappy, framed, 0)
	if err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("xerial decode: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	good, _ := Build(BatchOptions{ProducerID: -1}, sampleRecords(3))
	mutate := func(f func(b []byte) []byte) []byte {
		c := append([]byte(nil), good...)
		return f(c)
	}
	cases := []struct {
		name string
		buf  []byte
		want error
		msg  string
	}{
		{"short", good[:40], ErrCorrupt, "shorter than"},
		{"bad crc", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrCorrupt, "crc"},
		{"length too long", mutate(func(b []byte) []byte { b[11]++; return b }), ErrCorrupt, "runs past"},
		{"extra bytes", append(append([]byte(nil), good...), 0, 0), ErrCorrupt, "were sent"},
		{"magic 1", mutate(func(b []byte) []byte { b[16] = 1; return b }), ErrInvalid, "magic 1"},
		{"magic 0", mutate(func(b []byte) []byte { b[16] = 0; return b }), ErrInvalid, "magic 0"},
		{"codec 5", mutate(func(b []byte) []byte { b[22] |= 5; Batch(b).UpdateCRC(); return b }), ErrInvalid, "codec"},
		{"control bit", mutate(func(b []byte) []byte { b[22] |= AttrControl; Batch(b).UpdateCRC(); return b }), ErrInvalid, "control"},
		{"last delta", mutate(func(b []byte) []byte { b[26] = 7; Batch(b).UpdateCRC(); return b }), ErrInvalid, "lastOffsetDelta"},
		{"txn without pid", mutate(func(b []byte) []byte { b[22] |= AttrTransactional; Batch(b).UpdateCRC(); return b }), ErrInvalid, "producer id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Validate(c.buf, ValidateOptions{Records: true})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

func TestValidateRecordsSection(t *testing.T) {
	// Intact CRC over a records section that lies about its contents.
	b, _ := Build(BatchOptions{}, sampleRecords(3))
	hdr := Batch(b)
	// Claim four records: lastOffsetDelta 3, count 4.
	bad, _ := BuildRaw(BatchOptions{}, hdr.Records(), 4, 3, 0)
	if _, err := Validate(bad, ValidateOptions{Records: true}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "found 3") {
		t.Fatalf("count mismatch: %v", err)
	}
	// Garbage records.
	junk, _ := BuildRaw(BatchOptions{}, []byte{0x7f, 1, 2}, 1, 0, 0)
	if _, err := Validate(junk, ValidateOptions{Records: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("garbage records: %v", err)
	}
	// Without the record walk the header checks alone pass.
	if _, err := Validate(junk, ValidateOptions{}); err != nil {
		t.Fatalf("header-only validation: %v", err)
	}
}

func TestDecompressionBomb(t *testing.T) {
	big := make([]byte, 8<<20)
	for _, c := range []Codec{CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
		comp, err := Compress(c, big)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decompress(c, comp, 1<<20); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limit") {
			t.Errorf("%v: want a limit error, got %v", c, err)
		}
	}
}

func TestLastSequenceWraps(t *testing.T) {
	b, _ := Build(BatchOptions{BaseSequence: 1<<31 - 2}, sampleRecords(4))
	if got := Batch(b).LastSequence(); got != 1 {
		t.Fatalf("last sequence %d, want wrap to 1", got)
	}
}

func TestBaseSequenceEndingInvertsLastSequence(t *testing.T) {
	for _, c := range []struct{ last, delta, want int32 }{
		{106, 3, 103},
		{1, 3, 1<<31 - 2}, // wraps back across 2^31
		{5, 0, 5},
		{1<<31 - 1, 10, 1<<31 - 11},
	} {
		got := BaseSequenceEnding(c.last, c.delta)
		if got != c.want {
			t.Fatalf("BaseSequenceEnding(%d, %d) = %d, want %d", c.last, c.delta, got, c.want)
		}
		b, _ := Build(BatchOptions{BaseSequence: got}, sampleRecords(int(c.delta)+1))
		if Batch(b).LastSequence() != c.last {
			t.Fatalf("a batch of %d records from %d ends at %d, want %d", c.delta+1, got, Batch(b).LastSequence(), c.last)
		}
	}
}
