package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The record decoder sits on every produce (validation), every plugin call
// and every compaction pass, so it parses the record format directly
// rather than through kmsg's general reader: one bounds check per field,
// one- and two-byte varints inline, no allocation once the header slice has
// grown. It is stricter than kmsg where Kafka is: a record must consume
// exactly the bytes its length declares, and header counts and header key
// lengths may not be negative. A negative key, value or header value
// length is null, as in Kafka.

var (
	errVarint    = errors.New("malformed varint")
	errTruncated = errors.New("field runs past the record")
)

// varint decodes a zigzag varint at b[p:], returning the value and the
// position after it; callers try short first: function calls dominate the
// cost of decoding small records.
func varint(b []byte, p int) (int64, int, error) {
	if p >= len(b) {
		return 0, 0, errTruncated
	}
	u, n := binary.Uvarint(b[p:])
	if n <= 0 {
		return 0, 0, errVarint
	}
	return int64(u>>1) ^ -int64(u&1), p + n, nil
}

// varint32 is varint for a value that must fit 32 bits.
func varint32(b []byte, p int) (int32, int, error) {
	if v, next, ok := short(b, p); ok {
		return v, next, nil
	}
	v, next, err := varint(b, p)
	// Kafka (and kmsg) read a 32-bit varint from at most five bytes: a
	// longer encoding of a small value would be a record they refuse.
	if err == nil && (v != int64(int32(v)) || next-p > binary.MaxVarintLen32) {
		err = errVarint
	}
	return int32(v), next, err
}

// short decodes a zigzag varint of one or two bytes at b[p:] (a record's
// lengths, deltas and counts, nearly always) and the position after it; ok
// is false for a longer one, or for one cut short, left to varint32. It
// is small enough to be inlined, which is its point.
func short(b []byte, p int) (v int32, next int, ok bool) {
	if p < len(b) {
		u := uint32(b[p])
		if u < 0x80 {
			return int32(u>>1) ^ -int32(u&1), p + 1, true
		}
		if p+1 < len(b) && b[p+1] < 0x80 {
			u = u&0x7f | uint32(b[p+1])<<7
			return int32(u>>1) ^ -int32(u&1), p + 2, true
		}
	}
	return 0, p, false
}

// span locates the l bytes at b[p:] (null when l < 0) and returns the
// position after them.
func span(b []byte, p int, l int32) (Span, int, error) {
	if l < 0 {
		return Span{Off: p, Len: -1}, p, nil
	}
	if int(l) > len(b)-p {
		return Span{}, 0, errTruncated
	}
	return Span{Off: p, Len: int(l)}, p + int(l), nil
}

// Span locates a field in the buffer a record was decoded from: Len < 0
// is Kafka's null.
type Span struct{ Off, Len int }

// In returns the field's bytes in buf (nil for null).
func (s Span) In(buf []byte) []byte {
	if s.Len < 0 {
		return nil
	}
	return buf[s.Off : s.Off+s.Len : s.Off+s.Len]
}

// Fields locates the parts of one encoded record in the buffer it was
// decoded from, without building slices: what a caller that only needs
// some of them, or positions, pays for.
type Fields struct {
	At, End        int // the record's encoding is buf[At:End], its length prefix included
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key, Value     Span
	HeaderCount    int
	Headers        int // position of the first header

	length int32 // the length prefix
}

// DecodeFields decodes and checks the record at buf[at:]; positions in f
// are indexes into buf. Every header is checked too (see NextHeader).
func DecodeFields(buf []byte, at int, f *Fields) error {
	var (
		p, next  int
		ok       bool
		err      error
		l, count int32
	)
	if l, p, ok = short(buf, at); !ok {
		if l, p, err = varint32(buf, at); err != nil {
			return fmt.Errorf("length: %w", err)
		}
	}
	if l < 0 || int(l) > len(buf)-p {
		return fmt.Errorf("length %d runs past the %d bytes left", l, len(buf)-p)
	}
	b := buf[:p+int(l)]
	f.At, f.End, f.length = at, len(b), l
	if p >= len(b) {
		return fmt.Errorf("attributes: %w", errTruncated)
	}
	f.Attributes = int8(b[p])
	p++
	if l, next, ok = short(b, p); ok {
		f.TimestampDelta, p = int64(l), next
	} else if f.TimestampDelta, p, err = varint(b, p); err != nil {
		return fmt.Errorf("timestamp delta: %w", err)
	}
	if f.OffsetDelta, next, ok = short(b, p); ok {
		p = next
	} else if f.OffsetDelta, p, err = varint32(b, p); err != nil {
		return fmt.Errorf("offset delta: %w", err)
	}
	if l, next, ok = short(b, p); ok {
		p = next
	} else if l, p, err = varint32(b, p); err != nil {
		return fmt.Errorf("key length: %w", err)
	}
	if f.Key, p, err = span(b, p, l); err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if l, next, ok = short(b, p); ok {
		p = next
	} else if l, p, err = varint32(b, p); err != nil {
		return fmt.Errorf("value length: %w", err)
	}
	if f.Value, p, err = span(b, p, l); err != nil {
		return fmt.Errorf("value: %w", err)
	}
	if count, next, ok = short(b, p); ok {
		p = next
	} else if count, p, err = varint32(b, p); err != nil {
		return fmt.Errorf("header count: %w", err)
	}
	// Each header takes at least two bytes.
	if count < 0 || int(count) > (len(b)-p)/2 {
		return fmt.Errorf("header count %d with %d bytes left", count, len(b)-p)
	}
	f.HeaderCount, f.Headers = int(count), p
	for i := range int(count) {
		if l, p, err = varint32(b, p); err == nil && l < 0 {
			err = fmt.Errorf("negative length %d", l)
		}
		if err == nil {
			_, p, err = span(b, p, l)
		}
		if err != nil {
			return fmt.Errorf("header %d key: %w", i, err)
		}
		if l, p, err = varint32(b, p); err == nil {
			_, p, err = span(b, p, l)
		}
		if err != nil {
			return fmt.Errorf("header %d value: %w", i, err)
		}
	}
	if p != len(b) {
		return fmt.Errorf("%d bytes after the last header", len(b)-p)
	}
	return nil
}

// NextHeader returns the key and value of the header at buf[p:] and the
// position after it, for a record DecodeFields accepted: f.Headers is the
// first header's position.
func NextHeader(buf []byte, p int) (key, value Span, next int) {
	l, p, _ := varint32(buf, p)
	key, p, _ = span(buf, p, l)
	l, p, _ = varint32(buf, p)
	value, p, _ = span(buf, p, l)
	return key, value, p
}

// AppendHeaders appends the headers of f, the fields of a record in buf,
// to dst; keys and values alias buf.
func (f *Fields) AppendHeaders(buf []byte, dst []kmsg.Header) []kmsg.Header {
	p := f.Headers
	for range f.HeaderCount {
		var k, v Span
		k, v, p = NextHeader(buf, p)
		key := k.In(buf)
		dst = append(dst, kmsg.Header{Key: unsafe.String(unsafe.SliceData(key), len(key)), Value: v.In(buf)})
	}
	return dst
}

// fill sets r from f, the fields of a record in buf, reusing r.Headers'
// storage; its slices alias buf (header keys too).
func (f *Fields) fill(buf []byte, r *kmsg.Record) {
	hdrs := f.AppendHeaders(buf, r.Headers[:0])
	*r = kmsg.Record{
		Length:           f.length,
		Attributes:       f.Attributes,
		TimestampDelta64: f.TimestampDelta,
		TimestampDelta:   int32(f.TimestampDelta),
		OffsetDelta:      f.OffsetDelta,
		Key:              f.Key.In(buf),
		Value:            f.Value.In(buf),
		Headers:          hdrs,
	}
}

// DecodeRecord decodes the record at the start of src, its length prefix
// included, into r, reusing r.Headers' storage, and returns its size in
// bytes. Key, value and header slices (header keys too) alias src.
func DecodeRecord(src []byte, r *kmsg.Record) (int, error) {
	var f Fields
	if err := DecodeFields(src, 0, &f); err != nil {
		return 0, err
	}
	f.fill(src, r)
	return f.End, nil
}
