package abi

import (
	"fmt"
	"unsafe"
)

// Input is an RBV1 buffer ready to be written: an Encoder or a
// BlockEncoder.
type Input interface {
	Header() Header
	Len() int
	Size() int
	EncodeInto(dst []byte) []byte
}

var (
	_ Input = (*Encoder)(nil)
	_ Input = (*BlockEncoder)(nil)
)

// BlockEncoder builds an RBV1 buffer whose keys, values and header fields
// all lie in one block of memory, the records section of a Kafka batch on
// the host: EncodeInto copies the part of the block the records span once,
// whole, as the data area, and the record table points into it, instead
// of copying each field. The encoder keeps offsets, not slices, so adding
// a record costs a few words. It is reusable after Reset.
type BlockEncoder struct {
	h      Header
	block  []byte
	base   uintptr // address of block[0]
	lo, hi uint32  // the part of block the records span
	recs   []blockRec
	kvs    []blockKV
}

// blockSpan locates a field in the block: off relative to block[0]; len
// Null for null; empty fields have len 0 and any off.
type blockSpan struct{ off, len uint32 }

type blockRec struct {
	offsetDelta, attrs uint32
	ts                 int64
	key, value         blockSpan
	kvStart, kvEnd     uint32
	sourceIndex        uint32
}

type blockKV struct{ key, value blockSpan }

// Reset starts a new buffer with header h over block. Every non-empty
// slice added until the next Reset must lie inside block.
func (e *BlockEncoder) Reset(h Header, block []byte) {
	e.h, e.block = h, block
	e.base = uintptr(unsafe.Pointer(unsafe.SliceData(block)))
	e.lo, e.hi = uint32(len(block)), 0
	e.recs, e.kvs = e.recs[:0], e.kvs[:0]
}

// Restart starts a new buffer with the same header and block.
func (e *BlockEncoder) Restart() { e.Reset(e.h, e.block) }

// Header returns the header of the buffer.
func (e *BlockEncoder) Header() Header { return e.h }

// SetHeader replaces the header and keeps the records added so far.
func (e *BlockEncoder) SetHeader(h Header) { e.h = h }

// Len returns the number of records added.
func (e *BlockEncoder) Len() int { return len(e.recs) }

func (e *BlockEncoder) span(b []byte) blockSpan {
	if b == nil {
		return blockSpan{len: Null}
	}
	if len(b) == 0 {
		return blockSpan{}
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - e.base
	if off >= uintptr(len(e.block)) || uintptr(len(b)) > uintptr(len(e.block))-off {
		e.outside(len(b))
	}
	s := blockSpan{off: uint32(off), len: uint32(len(b))}
	e.lo, e.hi = min(e.lo, s.off), max(e.hi, s.off+s.len)
	return s
}

// AddRecord appends a record whose key and value lie in the block;
// AddHeader then gives it headers. Input records have route 0.
func (e *BlockEncoder) AddRecord(offsetDelta, attrs uint32, ts int64, key, value []byte, sourceIndex uint32) {
	k := uint32(len(e.kvs))
	e.recs = append(e.recs, blockRec{
		offsetDelta: offsetDelta, attrs: attrs, ts: ts,
		key: e.span(key), value: e.span(value),
		kvStart: k, kvEnd: k, sourceIndex: sourceIndex,
	})
}

// Cover makes the data area take in b, which lies in the block: the
// whole encoded record around the fields added, so that consecutive
// records make one contiguous area whose size is known before they are
// added.
func (e *BlockEncoder) Cover(b []byte) {
	off, n := uintptr(unsafe.Pointer(unsafe.SliceData(b)))-e.base, uintptr(len(b))
	if size := uintptr(len(e.block)); off > size || n > size-off {
		e.outside(len(b))
	}
	e.lo, e.hi = min(e.lo, uint32(off)), max(e.hi, uint32(off+n))
}

// AddHeader appends a header, whose key and value lie in the block, to
// the last record added.
func (e *BlockEncoder) AddHeader(key, value []byte) {
	e.kvs = append(e.kvs, blockKV{e.span(key), e.span(value)})
	e.recs[len(e.recs)-1].kvEnd++
}

func (e *BlockEncoder) dataLen() int {
	if e.hi < e.lo {
		return 0
	}
	return int(e.hi - e.lo)
}

// Size returns the length of the encoded buffer.
func (e *BlockEncoder) Size() int {
	return HeaderSize + len(e.recs)*RecordSize + len(e.kvs)*HeaderEntrySize + len(e.h.Topic) + e.dataLen()
}

// EncodeInto writes the buffer into dst, which must hold Size() bytes, and
// returns dst[:Size()]. Every byte in that range is written, so dst may be
// reused memory. The caller keeps Size() <= MaxBufferSize.
func (e *BlockEncoder) EncodeInto(dst []byte) []byte {
	size := e.Size()
	dst = dst[:size]
	n := len(e.recs)
	kvOff := HeaderSize + n*RecordSize
	topicOff := kvOff + len(e.kvs)*HeaderEntrySize
	e.h.write(dst, n, size, topicOff)
	data := topicOff + copy(dst[topicOff:], e.h.Topic)
	copy(dst[data:], e.block[min(e.lo, e.hi):e.hi])
	// A field at block offset off lands at off+shift; empty ones point
	// at the data area.
	shift := uint32(data) - min(e.lo, e.hi)
	put := func(p []byte, s blockSpan) {
		if s.len == Null || s.len == 0 {
			le.PutUint32(p, uint32(data))
		} else {
			le.PutUint32(p, s.off+shift)
		}
		le.PutUint32(p[4:], s.len)
	}
	for i := range e.recs {
		r := &e.recs[i]
		p := dst[HeaderSize+i*RecordSize : HeaderSize+(i+1)*RecordSize]
		writeEntry(p, r.offsetDelta, r.attrs, r.ts, uint32(kvOff)+r.kvStart*HeaderEntrySize, r.kvEnd-r.kvStart, r.sourceIndex, 0)
		put(p[recKeyOff:], r.key)
		put(p[recValueOff:], r.value)
	}
	for j := range e.kvs {
		q := dst[kvOff+j*HeaderEntrySize:]
		put(q[0:], e.kvs[j].key)
		put(q[8:], e.kvs[j].value)
	}
	return dst
}

// outside reports bytes that do not lie in the block, a caller's mistake.
//
//go:noinline
func (e *BlockEncoder) outside(n int) {
	panic(fmt.Sprintf("abi: BlockEncoder: %d bytes lie outside the %d-byte block", n, len(e.block)))
}
