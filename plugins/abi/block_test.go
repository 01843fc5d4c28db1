package abi

import (
	"bytes"
	"strings"
	"testing"
)

// sameViews compares two RBV1 buffers field by field.
func sameViews(t *testing.T, a, b []byte) {
	t.Helper()
	va, err := Open(a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := vb.Validate(); err != nil {
		t.Fatal(err)
	}
	if va.Len() != vb.Len() || va.Flags() != vb.Flags() || !bytes.Equal(va.Topic(), vb.Topic()) || va.PartitionCount() != vb.PartitionCount() || va.NowMs() != vb.NowMs() {
		t.Fatalf("headers differ")
	}
	eq := func(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) }
	for i := range va.Len() {
		ra, rb := va.Record(i), vb.Record(i)
		if !eq(ra.Key(), rb.Key()) || !eq(ra.Value(), rb.Value()) || ra.Timestamp() != rb.Timestamp() || ra.Attrs() != rb.Attrs() ||
			ra.OffsetDelta() != rb.OffsetDelta() || ra.SourceIndex() != rb.SourceIndex() || ra.Route() != rb.Route() || ra.HeaderCount() != rb.HeaderCount() {
			t.Fatalf("record %d differs: key %q/%q value %q/%q", i, ra.Key(), rb.Key(), ra.Value(), rb.Value())
		}
		for j := range ra.HeaderCount() {
			ka, xa := ra.Header(j)
			kb, xb := rb.Header(j)
			if !eq(ka, kb) || !eq(xa, xb) {
				t.Fatalf("record %d header %d differs: %q=%q / %q=%q", i, j, ka, xa, kb, xb)
			}
		}
	}
}

// addBlock adds r to b as the host adds a decoded record, its encoding
// being cover.
func addBlock(b *BlockEncoder, cover []byte, r Entry) {
	b.Cover(cover)
	b.AddRecord(r.OffsetDelta, r.Attrs, r.Timestamp, r.Key, r.Value, r.SourceIndex)
	for _, kv := range r.Headers {
		b.AddHeader(kv.Key, kv.Value)
	}
}

// TestBlockEncoderMatchesEncoder encodes the same records, whose fields
// lie in one block with bytes between them, with both encoders: the views
// agree on every field, and the data area holds only the span of the block
// the records cover.
func TestBlockEncoderMatchesEncoder(t *testing.T) {
	block := []byte("__key1__value-one__hk__hv__key2____v2__")
	at := func(s string) []byte {
		i := strings.Index(string(block), s)
		return block[i : i+len(s) : i+len(s)]
	}
	// The records' encodings: consecutive parts of the block.
	covers := [][]byte{block[2:26], block[26:27], block[27:37], block[37:37]}
	h := Header{Stage: StageProduce, Flags: FlagHeaders, Topic: []byte("orders"), Partition: Unassigned, PartitionCount: 12, BaseOffset: -1, NowMs: 7}
	entries := []Entry{
		{Timestamp: 10, Key: at("key1"), Value: at("value-one"), Headers: []KV{{Key: at("hk"), Value: at("hv")}, {Key: []byte{}, Value: nil}}},
		{OffsetDelta: 1, Timestamp: 11, Attrs: AttrTombstone, SourceIndex: 1},
		{OffsetDelta: 2, Timestamp: 12, Key: []byte{}, Value: at("v2"), SourceIndex: 2},
		{OffsetDelta: 3, Timestamp: 13, Key: at("key2"), Value: []byte{}, SourceIndex: 3},
	}
	var e Encoder
	var b BlockEncoder
	e.Reset(h)
	b.Reset(h, block)
	for i, r := range entries {
		e.Add(r)
		addBlock(&b, covers[i], r)
	}
	want, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got := b.EncodeInto(bytes.Repeat([]byte{0xAB}, b.Size()+8))
	if len(got) != b.Size() {
		t.Fatalf("encoded %d bytes, Size says %d", len(got), b.Size())
	}
	sameViews(t, want, got)
	// The data area follows the topic and holds the covered span; the
	// record table follows it, 8-byte aligned, then the header table.
	align := func(n int) int { return (n + 7) &^ 7 }
	span := len("key1__value-one__hk__hv__key2____v2")
	if size := align(HeaderSize+len("orders")+span) + 4*RecordSize + 2*HeaderEntrySize; b.Size() != size {
		t.Fatalf("buffer of %d bytes, want %d for a %d-byte data area", b.Size(), size, span)
	}
	if v, _ := Open(got); v.Record(0).e != align(HeaderSize+len("orders")+span) {
		t.Fatalf("record table at %d", v.Record(0).e)
	}

	// A later chunk: only its records' span is copied.
	b.Restart()
	addBlock(&b, at("key2"), entries[3])
	e.Reset(h)
	e.Add(entries[3])
	want, _ = e.Encode()
	sameViews(t, want, b.EncodeInto(make([]byte, b.Size())))
	if b.Size() != align(HeaderSize+len("orders")+len("key2"))+RecordSize {
		t.Fatalf("restarted encoder is %d bytes", b.Size())
	}

	// No records: a valid, empty buffer.
	b.Restart()
	if _, err := Open(b.EncodeInto(make([]byte, b.Size()))); err != nil || b.Len() != 0 {
		t.Fatalf("empty buffer: %v", err)
	}
}

func TestBlockEncoderRefusesForeignBytes(t *testing.T) {
	var b BlockEncoder
	b.Reset(Header{}, make([]byte, 16))
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "lie outside the 16-byte block") {
			t.Fatalf("panic = %v", p)
		}
	}()
	b.Cover([]byte("elsewhere"))
}

// A field outside what Cover took in would point past the data area.
func TestBlockEncoderRefusesUncoveredFields(t *testing.T) {
	block := []byte("covered|not")
	var b BlockEncoder
	b.Reset(Header{}, block)
	b.Cover(block[:7])
	b.AddRecord(0, 0, 0, block[:3], block[3:7], 0)
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "covered part") {
			t.Fatalf("panic = %v", p)
		}
	}()
	b.AddRecord(1, 0, 0, block[8:], nil, 1)
}
