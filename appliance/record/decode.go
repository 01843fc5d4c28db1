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

// span returns the l bytes at b[p:] (nil when l < 0, Kafka's null) and
// the position after them.
func span(b []byte, p int, l int32) ([]byte, int, error) {
	if l < 0 {
		return nil, p, nil
	}
	if int(l) > len(b)-p {
		return nil, 0, errTruncated
	}
	return b[p : p+int(l) : p+int(l)], p + int(l), nil
}

// DecodeRecord decodes the record at the start of src, its length prefix
// included, into r, reusing r.Headers' storage, and returns its size in
// bytes. Key, value and header slices (header keys too) alias src.
func DecodeRecord(src []byte, r *kmsg.Record) (int, error) {
	hdrs := r.Headers[:0]
	*r = kmsg.Record{}
	var (
		p, next  int
		ok       bool
		err      error
		l, count int32
	)
	b := src
	if l, p, ok = short(b, 0); !ok {
		if l, p, err = varint32(b, 0); err != nil {
			return 0, fmt.Errorf("length: %w", err)
		}
	}
	if l < 0 || int(l) > len(src)-p {
		return 0, fmt.Errorf("length %d runs past the %d bytes left", l, len(src)-p)
	}
	r.Length = l
	b = src[:p+int(l)]
	if p >= len(b) {
		return 0, fmt.Errorf("attributes: %w", errTruncated)
	}
	r.Attributes = int8(b[p])
	p++
	if l, next, ok = short(b, p); ok {
		r.TimestampDelta64, p = int64(l), next
	} else if r.TimestampDelta64, p, err = varint(b, p); err != nil {
		return 0, fmt.Errorf("timestamp delta: %w", err)
	}
	r.TimestampDelta = int32(r.TimestampDelta64)
	if r.OffsetDelta, next, ok = short(b, p); ok {
		p = next
	} else if r.OffsetDelta, p, err = varint32(b, p); err != nil {
		return 0, fmt.Errorf("offset delta: %w", err)
	}
	if l, next, ok = short(b, p); ok {
		p = next
	} else if l, p, err = varint32(b, p); err != nil {
		return 0, fmt.Errorf("key length: %w", err)
	}
	if r.Key, p, err = span(b, p, l); err != nil {
		return 0, fmt.Errorf("key: %w", err)
	}
	if l, next, ok = short(b, p); ok {
		p = next
	} else if l, p, err = varint32(b, p); err != nil {
		return 0, fmt.Errorf("value length: %w", err)
	}
	if r.Value, p, err = span(b, p, l); err != nil {
		return 0, fmt.Errorf("value: %w", err)
	}
	if count, next, ok = short(b, p); ok {
		p = next
	} else if count, p, err = varint32(b, p); err != nil {
		return 0, fmt.Errorf("header count: %w", err)
	}
	// Each header takes at least two bytes.
	if count < 0 || int(count) > (len(b)-p)/2 {
		return 0, fmt.Errorf("header count %d with %d bytes left", count, len(b)-p)
	}
	for i := range int(count) {
		var k, v []byte
		if l, p, err = varint32(b, p); err == nil && l < 0 {
			err = fmt.Errorf("negative length %d", l)
		}
		if err == nil {
			k, p, err = span(b, p, l)
		}
		if err != nil {
			return 0, fmt.Errorf("header %d key: %w", i, err)
		}
		if l, p, err = varint32(b, p); err == nil {
			v, p, err = span(b, p, l)
		}
		if err != nil {
			return 0, fmt.Errorf("header %d value: %w", i, err)
		}
		hdrs = append(hdrs, kmsg.Header{Key: unsafe.String(unsafe.SliceData(k), len(k)), Value: v})
	}
	if p != len(b) {
		return 0, fmt.Errorf("%d bytes after the last header", len(b)-p)
	}
	r.Headers = hdrs
	return len(b), nil
}
