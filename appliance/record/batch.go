// Package record is Eddy's view of Kafka's RecordBatch v2 (magic 2), the unit
// the log stores, replicates and serves.
//
// A batch is kept as the exact bytes the producer sent. Only two fields are
// ever rewritten, and neither is covered by the CRC: the base offset (set by
// the leader when it appends) and the partition leader epoch.
//
//	off  size  field
//	  0     8  baseOffset            (outside the CRC; patched on append)
//	  8     4  batchLength           bytes after this field: total = batchLength+12
//	 12     4  partitionLeaderEpoch  (outside the CRC; patched on append)
//	 16     1  magic                 always 2
//	 17     4  crc                   CRC-32C of bytes [21, end)
//	 21     2  attributes            bits 0-2 codec, 3 timestamp type,
//	                                 4 transactional, 5 control, 6 delete horizon
//	 23     4  lastOffsetDelta
//	 27     8  baseTimestamp
//	 35     8  maxTimestamp
//	 43     8  producerId
//	 51     2  producerEpoch
//	 53     4  baseSequence
//	 57     4  recordCount
//	 61     -  records               one compressed block when codec != 0
//
// Header fields are read at fixed offsets; records are decoded with
// franz-go's kmsg.Record, after decompression with klauspost/compress
// (gzip, snappy, zstd) or pierrec/lz4.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Header layout.
const (
	HeaderSize = 61 // bytes before the first record

	offBaseOffset    = 0
	offLength        = 8
	offLeaderEpoch   = 12
	offMagic         = 16
	offCRC           = 17
	offAttributes    = 21
	offLastDelta     = 23
	offBaseTimestamp = 27
	offMaxTimestamp  = 35
	offProducerID    = 43
	offProducerEpoch = 51
	offBaseSequence  = 53
	offRecordCount   = 57

	// LengthFieldEnd is where the bytes counted by batchLength begin.
	LengthFieldEnd = 12
	crcStart       = offAttributes
)

// Attribute bits.
const (
	AttrCodecMask     = 0x07
	AttrLogAppendTime = 0x08
	AttrTransactional = 0x10
	AttrControl       = 0x20
	AttrDeleteHorizon = 0x40
)

// Codec is a batch compression codec.
type Codec int8

// The codecs of RecordBatch v2.
const (
	CodecNone Codec = iota
	CodecGzip
	CodecSnappy
	CodecLZ4
	CodecZstd
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// Errors returned by validation. Callers map them to Kafka error codes:
// ErrCorrupt to CORRUPT_MESSAGE, ErrInvalid to INVALID_RECORD.
var (
	// ErrCorrupt says the bytes are damaged: wrong length, bad CRC, truncated.
	ErrCorrupt = errors.New("record: corrupt batch")
	// ErrInvalid says the bytes are intact but break a rule of the format or
	// of what a producer may send.
	ErrInvalid = errors.New("record: invalid batch")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch is a view over the bytes of one RecordBatch v2. The accessors assume
// at least HeaderSize bytes; Check or Validate establish that.
type Batch []byte

// BaseOffset returns the offset of the batch's first record.
func (b Batch) BaseOffset() int64 { return int64(binary.BigEndian.Uint64(b[offBaseOffset:])) }

// Length returns the batchLength field.
func (b Batch) Length() int32 { return int32(binary.BigEndian.Uint32(b[offLength:])) }

// Size returns the total size the header declares: batchLength + 12.
func (b Batch) Size() int { return int(b.Length()) + LengthFieldEnd }

// LeaderEpoch returns the partition leader epoch.
func (b Batch) LeaderEpoch() int32 { return int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])) }

// Magic returns the magic byte.
func (b Batch) Magic() int8 { return int8(b[offMagic]) }

// CRC returns the stored CRC.
func (b Batch) CRC() uint32 { return binary.BigEndian.Uint32(b[offCRC:]) }

// Attributes returns the attribute bits.
func (b Batch) Attributes() int16 { return int16(binary.BigEndian.Uint16(b[offAttributes:])) }

// Codec returns the compression codec.
func (b Batch) Codec() Codec { return Codec(b.Attributes() & AttrCodecMask) }

// IsControl reports whether this is a control (transaction marker) batch.
func (b Batch) IsControl() bool { return b.Attributes()&AttrControl != 0 }

// IsTransactional reports whether the batch belongs to a transaction.
func (b Batch) IsTransactional() bool { return b.Attributes()&AttrTransactional != 0 }

// LastOffsetDelta returns the lastOffsetDelta field.
func (b Batch) LastOffsetDelta() int32 { return int32(binary.BigEndian.Uint32(b[offLastDelta:])) }

// LastOffset returns the offset of the batch's last record.
func (b Batch) LastOffset() int64 { return b.BaseOffset() + int64(b.LastOffsetDelta()) }

// BaseTimestamp returns the first timestamp (or the delete horizon).
func (b Batch) BaseTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[offBaseTimestamp:])) }

// MaxTimestamp returns the largest timestamp in the batch.
func (b Batch) MaxTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])) }

// ProducerID returns the producer id, -1 when none.
func (b Batch) ProducerID() int64 { return int64(binary.BigEndian.Uint64(b[offProducerID:])) }

// ProducerEpoch returns the producer epoch.
func (b Batch) ProducerEpoch() int16 { return int16(binary.BigEndian.Uint16(b[offProducerEpoch:])) }

// BaseSequence returns the sequence number of the first record.
func (b Batch) BaseSequence() int32 { return int32(binary.BigEndian.Uint32(b[offBaseSequence:])) }

// LastSequence returns the sequence number of the last record, wrapping at
// int32 as Kafka does.
func (b Batch) LastSequence() int32 {
	s := int64(b.BaseSequence()) + int64(b.LastOffsetDelta())
	if s > 1<<31-1 {
		s -= 1 << 31
	}
	return int32(s)
}

// BaseSequenceEnding returns the base sequence of a batch whose last
// record, lastOffsetDelta after its first, has sequence last: the inverse
// of LastSequence, wrapping at int32 as Kafka does. A batch rebuilt with
// fewer records keeps its producer's last sequence this way.
func BaseSequenceEnding(last, lastOffsetDelta int32) int32 {
	s := int64(last) - int64(lastOffsetDelta)
	if s < 0 {
		s += 1 << 31
	}
	return int32(s)
}

// RecordCount returns the recordCount field.
func (b Batch) RecordCount() int32 { return int32(binary.BigEndian.Uint32(b[offRecordCount:])) }

// Records returns the (possibly compressed) records section.
func (b Batch) Records() []byte { return b[HeaderSize:] }

// SetBaseOffset patches the base offset (outside the CRC).
func (b Batch) SetBaseOffset(o int64) { binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(o)) }

// SetBaseSequence sets the baseSequence field (inside the CRC: call
// UpdateCRC after).
func (b Batch) SetBaseSequence(s int32) { binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(s)) }

// SetLeaderEpoch patches the partition leader epoch (outside the CRC).
func (b Batch) SetLeaderEpoch(e int32) { binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(e)) }

// ComputeCRC computes the CRC-32C the batch should carry.
func (b Batch) ComputeCRC() uint32 { return crc32.Checksum(b[crcStart:], castagnoli) }

// UpdateCRC recomputes and stores the CRC, after a CRC-covered field changed.
func (b Batch) UpdateCRC() { binary.BigEndian.PutUint32(b[offCRC:], b.ComputeCRC()) }

// CountRecords returns the records counted by the headers of the whole
// batches at the start of buf (a fetch's record set; a partial batch at
// the end is not counted).
func CountRecords(buf []byte) int64 {
	var n int64
	for len(buf) >= HeaderSize {
		size, ok := PeekSize(buf)
		if !ok || size > len(buf) {
			break
		}
		n += int64(Batch(buf).RecordCount())
		buf = buf[size:]
	}
	return n
}

// PeekSize returns the total size of the batch starting at buf, reading only
// the 12-byte prefix. ok is false when buf is shorter than that prefix.
func PeekSize(buf []byte) (size int, ok bool) {
	if len(buf) < LengthFieldEnd {
		return 0, false
	}
	return int(int32(binary.BigEndian.Uint32(buf[offLength:]))) + LengthFieldEnd, true
}

// Check verifies that buf starts with a whole, intact batch: the declared
// length is sane and fits in buf, magic is 2, and the CRC matches. It returns
// the batch (a prefix of buf). This is what recovery and reads rely on.
func Check(buf []byte) (Batch, error) {
	if len(buf) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(buf), HeaderSize)
	}
	b := Batch(buf)
	length := b.Length()
	if length < HeaderSize-LengthFieldEnd {
		return nil, fmt.Errorf("%w: batch length %d is below the minimum %d", ErrCorrupt, length, HeaderSize-LengthFieldEnd)
	}
	size := int(length) + LengthFieldEnd
	if size > len(buf) {
		return nil, fmt.Errorf("%w: batch length %d runs past the %d bytes available", ErrCorrupt, length, len(buf)-LengthFieldEnd)
	}
	b = b[:size]
	if m := b.Magic(); m != 2 {
		return nil, fmt.Errorf("%w: magic %d, only magic 2 (RecordBatch v2) is supported", ErrCorrupt, m)
	}
	if got, want := b.ComputeCRC(), b.CRC(); got != want {
		return nil, fmt.Errorf("%w: crc %08x, computed %08x", ErrCorrupt, want, got)
	}
	return b, nil
}

// ValidateOptions selects the checks of Validate beyond the header.
type ValidateOptions struct {
	// Records walks every record (decompressing when needed) and checks
	// the count, lengths and offset deltas. It costs CPU on compressed
	// batches.
	Records bool
	// MaxUncompressed bounds a decompressed records section; 0 means
	// DefaultMaxUncompressed.
	MaxUncompressed int
}

// Validate checks a batch as a producer sent it: buf must hold exactly one
// batch, intact (see Check), with codec <= 4, lastOffsetDelta = count-1, no
// control bit, and a producer id on transactional batches. Magic 0 and 1
// get ErrInvalid with a message naming the magic.
func Validate(buf []byte, opts ValidateOptions) (Batch, error) {
	if len(buf) >= offMagic+1 && buf[offMagic] != 2 {
		return nil, fmt.Errorf("%w: magic %d: only magic 2 (RecordBatch v2) is accepted", ErrInvalid, int8(buf[offMagic]))
	}
	b, err := Check(buf)
	if err != nil {
		return nil, err
	}
	if len(b) != len(buf) {
		return nil, fmt.Errorf("%w: batch length %d declares %d bytes but %d were sent", ErrCorrupt, b.Length(), len(b), len(buf))
	}
	attrs := b.Attributes()
	if c := b.Codec(); c > CodecZstd {
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, c)
	}
	if attrs&AttrControl != 0 {
		return nil, fmt.Errorf("%w: control batches may not be produced by clients", ErrInvalid)
	}
	n := b.RecordCount()
	if n <= 0 {
		return nil, fmt.Errorf("%w: record count %d", ErrInvalid, n)
	}
	if d := b.LastOffsetDelta(); d != n-1 {
		return nil, fmt.Errorf("%w: lastOffsetDelta %d with %d records (want %d)", ErrInvalid, d, n, n-1)
	}
	if attrs&AttrTransactional != 0 && b.ProducerID() < 0 {
		return nil, fmt.Errorf("%w: transactional batch without a producer id", ErrInvalid)
	}
	if opts.Records {
		if err := checkRecords(b, opts.MaxUncompressed); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func checkRecords(b Batch, maxUncompressed int) error {
	raw, err := b.Data(maxUncompressed)
	if err != nil {
		return err
	}
	want := int32(0)
	err = b.EachFieldsIn(raw, func(f *Fields) error {
		if f.OffsetDelta != want {
			return fmt.Errorf("%w: record %d has offset delta %d", ErrInvalid, want, f.OffsetDelta)
		}
		want++
		return nil
	})
	if err != nil {
		return err
	}
	if want != b.RecordCount() {
		return fmt.Errorf("%w: header counts %d records, found %d", ErrInvalid, b.RecordCount(), want)
	}
	return nil
}
