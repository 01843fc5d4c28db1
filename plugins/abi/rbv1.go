package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RBV1 layout: see the package documentation.
const (
	Magic           = 0x31564252 // "RBV1" read as a little-endian u32
	HeaderSize      = 64
	RecordSize      = 48
	HeaderEntrySize = 16
	Null            = 0xFFFFFFFF // a length meaning "null" (Kafka's null key or value)
	Unassigned      = 0xFFFFFFFF // partition not yet assigned

	offMagic          = 0
	offHeaderSize     = 4
	offABIMinor       = 6
	offRecordCount    = 8
	offStage          = 12
	offFlags          = 14
	offTopicOff       = 16
	offTopicLen       = 20
	offPartition      = 24
	offPartitionCount = 28
	offBaseOffset     = 32
	offNowMs          = 40
	offRecordsOff     = 48
	offTotalLen       = 52

	recOffsetDelta  = 0
	recAttrs        = 4
	recTimestamp    = 8
	recKeyOff       = 16
	recKeyLen       = 20
	recValueOff     = 24
	recValueLen     = 28
	recHeadersOff   = 32
	recHeadersCount = 36
	recSourceIndex  = 40
	recRoute        = 44
)

// Header flag bits.
const (
	FlagHeaders         uint16 = 1 << 0 // records carry headers
	FlagOffsetsAssigned uint16 = 1 << 1 // base_offset and offset deltas are real offsets
)

// Host bits in a record's attrs, above Kafka's 16 record-attribute bits.
const (
	AttrTombstone    uint32 = 1 << 16 // the value is null
	AttrLatestForKey uint32 = 1 << 17 // cleanup: the latest record for its key
)

// ErrLayout is wrapped by every error about a malformed RBV1 buffer or
// segment meta.
var ErrLayout = errors.New("abi: malformed buffer")

var le = binary.LittleEndian

// View is a read-only, zero-copy view over an RBV1 buffer. Open checks the
// header; Validate checks every offset. Accessors on an unvalidated view
// panic (Go bounds checks) rather than read outside the buffer.
type View struct {
	b []byte
}

// Open returns a view over buf after checking the header: magic, sizes,
// total_len == len(buf), and that the record table fits.
func Open(buf []byte) (View, error) {
	if len(buf) < HeaderSize {
		return View{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrLayout, len(buf), HeaderSize)
	}
	if m := le.Uint32(buf[offMagic:]); m != Magic {
		return View{}, fmt.Errorf("%w: magic %#08x, want %#08x (RBV1)", ErrLayout, m, uint32(Magic))
	}
	hs := uint64(le.Uint16(buf[offHeaderSize:]))
	if hs < HeaderSize || hs > uint64(len(buf)) {
		return View{}, fmt.Errorf("%w: header_size %d outside [%d, %d]", ErrLayout, hs, HeaderSize, len(buf))
	}
	if t := le.Uint32(buf[offTotalLen:]); uint64(t) != uint64(len(buf)) {
		return View{}, fmt.Errorf("%w: total_len %d but the buffer holds %d bytes", ErrLayout, t, len(buf))
	}
	n := uint64(le.Uint32(buf[offRecordCount:]))
	ro := uint64(le.Uint32(buf[offRecordsOff:]))
	if ro < hs || ro+n*RecordSize > uint64(len(buf)) {
		return View{}, fmt.Errorf("%w: record table of %d entries at %d runs past %d bytes", ErrLayout, n, ro, len(buf))
	}
	return View{b: buf}, nil
}

// Bytes returns the underlying buffer.
func (v View) Bytes() []byte { return v.b }

// Len returns the number of records (0 for the zero View).
func (v View) Len() int {
	if len(v.b) < HeaderSize {
		return 0
	}
	return int(le.Uint32(v.b[offRecordCount:]))
}

// HeaderSize returns the header_size field.
func (v View) HeaderSize() int { return int(le.Uint16(v.b[offHeaderSize:])) }

// ABIMinor returns the abi_minor field.
func (v View) ABIMinor() uint16 { return le.Uint16(v.b[offABIMinor:]) }

// Stage returns the stage of the call.
func (v View) Stage() Stage { return Stage(v.b[offStage]) }

// Flags returns the flag bits.
func (v View) Flags() uint16 { return le.Uint16(v.b[offFlags:]) }

// Topic returns the topic name bytes.
func (v View) Topic() []byte {
	return v.slice(le.Uint32(v.b[offTopicOff:]), le.Uint32(v.b[offTopicLen:]))
}

// Partition returns the partition, Unassigned when none.
func (v View) Partition() uint32 { return le.Uint32(v.b[offPartition:]) }

// PartitionCount returns the destination topic's partition count.
func (v View) PartitionCount() uint32 { return le.Uint32(v.b[offPartitionCount:]) }

// BaseOffset returns the base offset, -1 when not assigned.
func (v View) BaseOffset() int64 { return int64(le.Uint64(v.b[offBaseOffset:])) }

// NowMs returns the broker's wall clock for this call, in Unix milliseconds.
func (v View) NowMs() int64 { return int64(le.Uint64(v.b[offNowMs:])) }

// Record returns the i-th record.
func (v View) Record(i int) RecordView {
	return RecordView{b: v.b, e: int(le.Uint32(v.b[offRecordsOff:])) + i*RecordSize}
}

func (v View) slice(off, n uint32) []byte {
	if n == Null {
		return nil
	}
	return v.b[off : off+n : off+n]
}

// Validate checks that every offset and length of the topic, the records
// and their headers lies inside the buffer.
func (v View) Validate() error {
	size := uint64(len(v.b))
	in := func(off, n uint32) bool {
		return n == Null || uint64(off)+uint64(n) <= size
	}
	if !in(le.Uint32(v.b[offTopicOff:]), le.Uint32(v.b[offTopicLen:])) {
		return fmt.Errorf("%w: topic runs past %d bytes", ErrLayout, size)
	}
	for i, n := 0, v.Len(); i < n; i++ {
		r := v.Record(i)
		e := r.b[r.e : r.e+RecordSize]
		if !in(le.Uint32(e[recKeyOff:]), le.Uint32(e[recKeyLen:])) {
			return fmt.Errorf("%w: record %d: key runs past %d bytes", ErrLayout, i, size)
		}
		if !in(le.Uint32(e[recValueOff:]), le.Uint32(e[recValueLen:])) {
			return fmt.Errorf("%w: record %d: value runs past %d bytes", ErrLayout, i, size)
		}
		ho, hc := uint64(le.Uint32(e[recHeadersOff:])), uint64(le.Uint32(e[recHeadersCount:]))
		if hc == 0 {
			continue
		}
		if ho+hc*HeaderEntrySize > size {
			return fmt.Errorf("%w: record %d: header table of %d entries at %d runs past %d bytes", ErrLayout, i, hc, ho, size)
		}
		for j := uint64(0); j < hc; j++ {
			h := v.b[ho+j*HeaderEntrySize:]
			if !in(le.Uint32(h[0:]), le.Uint32(h[4:])) || !in(le.Uint32(h[8:]), le.Uint32(h[12:])) {
				return fmt.Errorf("%w: record %d: header %d runs past %d bytes", ErrLayout, i, j, size)
			}
		}
	}
	return nil
}

// RecordView is one entry of the record table.
type RecordView struct {
	b []byte
	e int // offset of the entry
}

func (r RecordView) u32(off int) uint32 { return le.Uint32(r.b[r.e+off:]) }

func (r RecordView) slice(off, n uint32) []byte {
	if n == Null {
		return nil
	}
	return r.b[off : off+n : off+n]
}

// OffsetDelta returns offset - base_offset (input records).
func (r RecordView) OffsetDelta() uint32 { return r.u32(recOffsetDelta) }

// Attrs returns the Kafka record attributes plus the host bits.
func (r RecordView) Attrs() uint32 { return r.u32(recAttrs) }

// Timestamp returns the record's timestamp in Unix milliseconds.
func (r RecordView) Timestamp() int64 { return int64(le.Uint64(r.b[r.e+recTimestamp:])) }

// Key returns the key, nil when null. It aliases the buffer.
func (r RecordView) Key() []byte { return r.slice(r.u32(recKeyOff), r.u32(recKeyLen)) }

// Value returns the value, nil when null. It aliases the buffer.
func (r RecordView) Value() []byte { return r.slice(r.u32(recValueOff), r.u32(recValueLen)) }

// KeyIsNull reports whether the key is null (as opposed to empty).
func (r RecordView) KeyIsNull() bool { return r.u32(recKeyLen) == Null }

// ValueIsNull reports whether the value is null.
func (r RecordView) ValueIsNull() bool { return r.u32(recValueLen) == Null }

// HeaderCount returns the number of record headers.
func (r RecordView) HeaderCount() int { return int(r.u32(recHeadersCount)) }

// Header returns the j-th record header; a null value is nil.
func (r RecordView) Header(j int) (key, value []byte) {
	h := int(r.u32(recHeadersOff)) + j*HeaderEntrySize
	return r.slice(le.Uint32(r.b[h:]), le.Uint32(r.b[h+4:])), r.slice(le.Uint32(r.b[h+8:]), le.Uint32(r.b[h+12:]))
}

// SourceIndex returns the source_index field.
func (r RecordView) SourceIndex() uint32 { return r.u32(recSourceIndex) }

// Route returns the route field.
func (r RecordView) Route() uint32 { return r.u32(recRoute) }

// Header is the fixed part of an RBV1 buffer as an Encoder writes it.
type Header struct {
	Stage          Stage
	Flags          uint16
	Topic          []byte
	Partition      uint32 // Unassigned when none
	PartitionCount uint32
	BaseOffset     int64 // -1 when not assigned
	NowMs          int64
}

// KV is one record header; a nil Value is null.
type KV struct {
	Key, Value []byte
}

// Entry is one record as an Encoder writes it. Nil Key or Value are null.
type Entry struct {
	OffsetDelta uint32
	Attrs       uint32
	Timestamp   int64
	Key, Value  []byte
	Headers     []KV
	SourceIndex uint32
	Route       uint32
}

type encEntry struct {
	Entry
	kvStart int
}

// Encoder builds an RBV1 buffer. It keeps only slice headers until
// EncodeInto copies the bytes, so one pass over the records copies each
// key, value and header once. An Encoder is reusable after Reset.
type Encoder struct {
	h    Header
	recs []encEntry
	kvs  []KV
	data uint64
}

// Reset starts a new buffer with header h.
func (e *Encoder) Reset(h Header) {
	e.h = h
	e.recs = e.recs[:0]
	clear(e.kvs)
	e.kvs = e.kvs[:0]
	e.data = uint64(len(h.Topic))
}

// Header returns the header the encoder was reset with.
func (e *Encoder) Header() Header { return e.h }

// SetHeader replaces the header and keeps the records added so far.
func (e *Encoder) SetHeader(h Header) {
	e.data += uint64(len(h.Topic)) - uint64(len(e.h.Topic))
	e.h = h
}

// Add appends a record. Its slices are referenced, not copied, until
// EncodeInto; Headers is copied into the encoder's own table.
func (e *Encoder) Add(r Entry) {
	start := len(e.kvs)
	for _, kv := range r.Headers {
		e.kvs = append(e.kvs, kv)
		e.data += uint64(len(kv.Key) + len(kv.Value))
	}
	r.Headers = nil
	e.recs = append(e.recs, encEntry{Entry: r, kvStart: start})
	e.data += uint64(len(r.Key) + len(r.Value))
}

// Len returns the number of records added.
func (e *Encoder) Len() int { return len(e.recs) }

// Entry returns the i-th record added (without its headers).
func (e *Encoder) Entry(i int) Entry { return e.recs[i].Entry }

// Size returns the length of the encoded buffer.
func (e *Encoder) Size() int {
	return int(HeaderSize + uint64(len(e.recs))*RecordSize + uint64(len(e.kvs))*HeaderEntrySize + e.data)
}

// Encode returns the buffer in a new slice. It fails when the buffer would
// not fit 32-bit offsets.
func (e *Encoder) Encode() ([]byte, error) {
	if e.Size() > MaxBufferSize {
		return nil, fmt.Errorf("%w: encoded buffer of %d bytes exceeds %d", ErrLayout, e.Size(), MaxBufferSize)
	}
	buf := make([]byte, e.Size())
	e.EncodeInto(buf)
	return buf, nil
}

// MaxBufferSize bounds an RBV1 buffer so that every offset and length fits
// in 32 bits below the Null marker.
const MaxBufferSize = 1<<32 - 2

// EncodeInto writes the buffer into dst, which must hold Size() bytes, and
// returns dst[:Size()]. Every byte in that range is written, so dst may be
// reused memory. The caller keeps Size() <= MaxBufferSize.
func (e *Encoder) EncodeInto(dst []byte) []byte {
	size := e.Size()
	dst = dst[:size]
	n := len(e.recs)
	recOff := HeaderSize
	kvOff := recOff + n*RecordSize
	data := kvOff + len(e.kvs)*HeaderEntrySize

	e.h.write(dst, n, size, data, HeaderSize)
	data += copy(dst[data:], e.h.Topic)

	put := func(p []byte, b []byte) {
		if b == nil {
			le.PutUint32(p, uint32(data))
			le.PutUint32(p[4:], Null)
			return
		}
		le.PutUint32(p, uint32(data))
		le.PutUint32(p[4:], uint32(len(b)))
		data += copy(dst[data:], b)
	}
	for i := range e.recs {
		r := &e.recs[i]
		p := dst[recOff+i*RecordSize : recOff+(i+1)*RecordSize]
		end := len(e.kvs)
		if i+1 < n {
			end = e.recs[i+1].kvStart
		}
		writeEntry(p, r.OffsetDelta, r.Attrs, r.Timestamp, uint32(kvOff+r.kvStart*HeaderEntrySize), uint32(end-r.kvStart), r.SourceIndex, r.Route)
		put(p[recKeyOff:], r.Key)
		put(p[recValueOff:], r.Value)
		for j := r.kvStart; j < end; j++ {
			q := dst[kvOff+j*HeaderEntrySize:]
			put(q[0:], e.kvs[j].Key)
			put(q[8:], e.kvs[j].Value)
		}
	}
	return dst
}

// write fills dst's 64-byte header for n records in a buffer of size
// bytes, the topic at topicOff and the record table at recordsOff.
func (h *Header) write(dst []byte, n, size, topicOff, recordsOff int) {
	p := dst[:HeaderSize]
	le.PutUint32(p[offMagic:], Magic)
	le.PutUint16(p[offHeaderSize:], HeaderSize)
	le.PutUint16(p[offABIMinor:], Minor)
	le.PutUint32(p[offRecordCount:], uint32(n))
	p[offStage] = byte(h.Stage)
	p[offStage+1] = 0
	le.PutUint16(p[offFlags:], h.Flags)
	le.PutUint32(p[offTopicOff:], uint32(topicOff))
	le.PutUint32(p[offTopicLen:], uint32(len(h.Topic)))
	le.PutUint32(p[offPartition:], h.Partition)
	le.PutUint32(p[offPartitionCount:], h.PartitionCount)
	le.PutUint64(p[offBaseOffset:], uint64(h.BaseOffset))
	le.PutUint64(p[offNowMs:], uint64(h.NowMs))
	le.PutUint32(p[offRecordsOff:], uint32(recordsOff))
	le.PutUint32(p[offTotalLen:], uint32(size))
	le.PutUint64(p[56:], 0)
}

// writeEntry fills the fields of a record-table entry p other than its
// key and value.
func writeEntry(p []byte, offsetDelta, attrs uint32, ts int64, headersOff, headersCount, sourceIndex, route uint32) {
	le.PutUint32(p[recOffsetDelta:], offsetDelta)
	le.PutUint32(p[recAttrs:], attrs)
	le.PutUint64(p[recTimestamp:], uint64(ts))
	le.PutUint32(p[recHeadersOff:], headersOff)
	le.PutUint32(p[recHeadersCount:], headersCount)
	le.PutUint32(p[recSourceIndex:], sourceIndex)
	le.PutUint32(p[recRoute:], route)
}
