package abi

import (
	"fmt"
	"slices"
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
// of copying each field.
//
// The data area comes right after the header and the topic, so its place
// is known before the first record: each record's table entry is written
// in its final form as the record is added, and EncodeInto copies the
// tables whole (only the header-table offsets of records with headers are
// completed there). The record table follows the data area, 8-byte
// aligned, and the header table follows it. The encoder is reusable after
// Reset.
type BlockEncoder struct {
	h       Header
	block   []byte
	base    uintptr // address of block[0]
	lo, hi  uint32  // the part of block the records span (Cover)
	covered bool    // lo is set
	dataOff uint32  // where the data area starts in the buffer
	table   []byte  // record entries; headers_off relative to the header table
	kvs     []byte  // header entries
}

// Reset starts a new buffer with header h over block. Every non-empty
// slice added until the next Reset must lie inside block.
func (e *BlockEncoder) Reset(h Header, block []byte) {
	e.h, e.block = h, block
	e.base = uintptr(unsafe.Pointer(unsafe.SliceData(block)))
	e.dataOff = uint32(HeaderSize + len(h.Topic))
	e.lo, e.hi, e.covered = 0, 0, false
	e.table, e.kvs = e.table[:0], e.kvs[:0]
}

// Restart starts a new buffer with the same header and block.
func (e *BlockEncoder) Restart() { e.Reset(e.h, e.block) }

// Header returns the header of the buffer.
func (e *BlockEncoder) Header() Header { return e.h }

// SetHeader replaces the header and keeps the records added so far; the
// topic keeps its length (the data area's place depends on it).
func (e *BlockEncoder) SetHeader(h Header) {
	if len(h.Topic) != len(e.h.Topic) {
		panic(fmt.Sprintf("abi: BlockEncoder: SetHeader changes the topic's length from %d to %d", len(e.h.Topic), len(h.Topic)))
	}
	e.h = h
}

// Len returns the number of records added.
func (e *BlockEncoder) Len() int { return len(e.table) / RecordSize }

// Cover makes the data area take in b, which lies in the block: the whole
// encoded record whose fields are added next. The first Cover after a
// Reset or Restart fixes where the data area starts; later ones extend it
// (consecutive records make one contiguous area), so the buffer's size is
// known before the fields are added.
func (e *BlockEncoder) Cover(b []byte) {
	off, n := uintptr(unsafe.Pointer(unsafe.SliceData(b)))-e.base, uintptr(len(b))
	if size := uintptr(len(e.block)); off > size || n > size-off {
		e.outside(len(b))
	}
	if !e.covered {
		e.lo, e.hi, e.covered = uint32(off), uint32(off), true
	}
	if uint32(off) < e.lo {
		e.outside(len(b))
	}
	e.hi = max(e.hi, uint32(off+n))
}

// put writes the offset and length of field b, which lies in the covered
// part of the block, at p.
func (e *BlockEncoder) put(p []byte, b []byte) {
	off, n := uint32(e.dataOff), uint32(Null)
	if b != nil {
		n = uint32(len(b))
	}
	if len(b) > 0 {
		at := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - e.base
		if at < uintptr(e.lo) || at > uintptr(e.hi) || uintptr(len(b)) > uintptr(e.hi)-at {
			e.outside(len(b))
		}
		off += uint32(at) - e.lo
	}
	le.PutUint32(p, off)
	le.PutUint32(p[4:], n)
}

// AddRecord appends a record whose key and value lie in the part of the
// block covered so far; AddHeader then gives it headers. Input records
// have route 0.
func (e *BlockEncoder) AddRecord(offsetDelta, attrs uint32, ts int64, key, value []byte, sourceIndex uint32) {
	n := len(e.table)
	e.table = slices.Grow(e.table, RecordSize)[:n+RecordSize]
	p := e.table[n : n+RecordSize]
	writeEntry(p, offsetDelta, attrs, ts, uint32(len(e.kvs)), 0, sourceIndex, 0)
	e.put(p[recKeyOff:], key)
	e.put(p[recValueOff:], value)
}

// AddHeader appends a header, whose key and value lie in the covered part
// of the block, to the last record added.
func (e *BlockEncoder) AddHeader(key, value []byte) {
	n := len(e.kvs)
	e.kvs = slices.Grow(e.kvs, HeaderEntrySize)[:n+HeaderEntrySize]
	e.put(e.kvs[n:], key)
	e.put(e.kvs[n+8:], value)
	p := e.table[len(e.table)-RecordSize:]
	le.PutUint32(p[recHeadersCount:], le.Uint32(p[recHeadersCount:])+1)
}

// layout returns where the record table starts and the buffer's size with
// data bytes of data area, records records and headers headers more.
func (e *BlockEncoder) layout(data, records, headers int) (recordsOff, size int) {
	recordsOff = (int(e.dataOff) + int(e.hi-e.lo) + data + 7) &^ 7
	return recordsOff, recordsOff + len(e.table) + records*RecordSize + len(e.kvs) + headers*HeaderEntrySize
}

// Size returns the length of the encoded buffer.
func (e *BlockEncoder) Size() int {
	_, size := e.layout(0, 0, 0)
	return size
}

// SizeWith returns the length the encoded buffer would have after one
// more record of data bytes (its whole encoding, to be covered) with
// headers headers.
func (e *BlockEncoder) SizeWith(data, headers int) int {
	_, size := e.layout(data, 1, headers)
	return size
}

// EncodeInto writes the buffer into dst, which must hold Size() bytes, and
// returns dst[:Size()]. Every byte in that range is written, so dst may be
// reused memory. The caller keeps Size() <= MaxBufferSize.
func (e *BlockEncoder) EncodeInto(dst []byte) []byte {
	recordsOff, size := e.layout(0, 0, 0)
	dst = dst[:size]
	e.h.write(dst, e.Len(), size, HeaderSize, recordsOff)
	copy(dst[HeaderSize:], e.h.Topic)
	dataEnd := int(e.dataOff) + copy(dst[e.dataOff:], e.block[e.lo:e.hi])
	clear(dst[dataEnd:recordsOff])
	kvOff := recordsOff + copy(dst[recordsOff:], e.table)
	copy(dst[kvOff:], e.kvs)
	if len(e.kvs) > 0 {
		for p := recordsOff; p < kvOff; p += RecordSize {
			if le.Uint32(dst[p+recHeadersCount:]) > 0 {
				le.PutUint32(dst[p+recHeadersOff:], le.Uint32(dst[p+recHeadersOff:])+uint32(kvOff))
			}
		}
	}
	return dst
}

// outside reports bytes that do not lie in the block, or not in its
// covered part, a caller's mistake.
//
//go:noinline
func (e *BlockEncoder) outside(n int) {
	panic(fmt.Sprintf("abi: BlockEncoder: %d bytes lie outside the %d-byte block or its covered part", n, len(e.block)))
}
