package record

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record is one decoded record with its absolute offset and timestamp.
type Record struct {
	kmsg.Record
	Offset    int64  // batch base offset + offset delta
	Timestamp int64  // batch base timestamp + timestamp delta
	Raw       []byte // the encoded record, length prefix included
}

// EachRecord decodes the batch's records in order and calls fn for each.
// Compressed records are decompressed first, up to maxUncompressed bytes
// (0 means DefaultMaxUncompressed). Key, value and header slices alias the
// batch or the decompression buffer and are valid only during fn.
func (b Batch) EachRecord(maxUncompressed int, fn func(*Record) error) error {
	raw, err := b.Data(maxUncompressed)
	if err != nil {
		return err
	}
	return b.EachRecordIn(raw, fn)
}

// Data returns the batch's records section, decompressed (up to
// maxUncompressed bytes, 0 meaning DefaultMaxUncompressed) when the batch
// is compressed.
func (b Batch) Data(maxUncompressed int) ([]byte, error) {
	if c := b.Codec(); c != CodecNone {
		return Decompress(c, b.Records(), maxUncompressed)
	}
	return b.Records(), nil
}

// EachRecordIn is EachRecord over raw, the batch's Data: fn's slices alias
// raw, so they stay valid as long as raw does.
func (b Batch) EachRecordIn(raw []byte, fn func(*Record) error) error {
	base, ts := b.BaseOffset(), b.BaseTimestamp()
	var r Record
	return b.EachFieldsIn(raw, func(f *Fields) error {
		f.fill(raw, &r.Record)
		r.Offset = base + int64(f.OffsetDelta)
		r.Timestamp = ts + f.TimestampDelta
		r.Raw = raw[f.At:f.End:f.End]
		return fn(&r)
	})
}

// EachFieldsIn is EachRecordIn without building records: fn gets each
// record's Fields, whose positions index raw.
func (b Batch) EachFieldsIn(raw []byte, fn func(*Fields) error) error {
	var f Fields
	count := b.RecordCount()
	for n, at := int32(0), 0; at < len(raw); n++ {
		if n >= count {
			return fmt.Errorf("%w: %d bytes after the %d records the header counts", ErrInvalid, len(raw)-at, n)
		}
		if err := DecodeFields(raw, at, &f); err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, n, err)
		}
		if err := fn(&f); err != nil {
			return err
		}
		at = f.End
	}
	return nil
}

// BatchOptions are the header fields of a batch built by Build.
type BatchOptions struct {
	BaseOffset     int64
	LeaderEpoch    int32
	Codec          Codec
	Attributes     int16 // extra attribute bits (transactional, control, timestamp type)
	BaseTimestamp  int64
	ProducerID     int64 // -1 when not idempotent
	ProducerEpoch  int16
	BaseSequence   int32
	DeleteHorizon  bool
	RecordsAreRaw  bool // Records already hold encoded records (used by rewrites)
	RawRecordCount int32
}

// Simple is a record to build a batch from.
type Simple struct {
	Key, Value      []byte
	Headers         []kmsg.Header
	TimestampDelta  int64
	OffsetDeltaSkip int32 // extra offset gap before this record (compacted rewrites)
}

// Build encodes records into one RecordBatch v2 with a correct length and
// CRC. It is used for batches the broker writes itself (control and
// internal-topic batches), for rewrites and in tests.
func Build(opts BatchOptions, recs []Simple) ([]byte, error) {
	var raw []byte
	var delta int32
	maxTS := opts.BaseTimestamp
	for i, s := range recs {
		if i > 0 {
			delta++
		}
		delta += s.OffsetDeltaSkip
		kr := kmsg.Record{
			TimestampDelta64: s.TimestampDelta,
			OffsetDelta:      delta,
			Key:              s.Key,
			Value:            s.Value,
			Headers:          s.Headers,
		}
		// The length prefix counts everything after itself.
		body := kr.AppendTo(nil)
		_, k := binary.Varint(body)
		kr.Length = int32(len(body) - k)
		raw = kr.AppendTo(raw)
		maxTS = max(maxTS, opts.BaseTimestamp+s.TimestampDelta)
	}
	return BuildRaw(opts, raw, int32(len(recs)), delta, maxTS)
}

// BuildRaw wraps raw, encoded records, in a RecordBatch v2 with a correct
// length and CRC (compressing them when opts.Codec says so).
func BuildRaw(opts BatchOptions, raw []byte, count, lastOffsetDelta int32, maxTimestamp int64) ([]byte, error) {
	buf := make([]byte, HeaderSize, HeaderSize+len(raw))
	return BuildInto(opts, append(buf, raw...), count, lastOffsetDelta, maxTimestamp)
}

// BuildInto completes a RecordBatch v2 in buf, which holds HeaderSize
// reserved bytes followed by the encoded records (AppendRecord): it writes
// the header, length and CRC in place, without copying the records unless
// opts.Codec asks for compression.
func BuildInto(opts BatchOptions, buf []byte, count, lastOffsetDelta int32, maxTimestamp int64) ([]byte, error) {
	if len(buf) < HeaderSize {
		return nil, fmt.Errorf("build batch: %d bytes, shorter than the %d reserved for the header", len(buf), HeaderSize)
	}
	if opts.Codec != CodecNone {
		raw, err := Compress(opts.Codec, buf[HeaderSize:])
		if err != nil {
			return nil, err
		}
		buf = append(buf[:HeaderSize:HeaderSize], raw...)
	}
	attrs := opts.Attributes&^AttrCodecMask | int16(opts.Codec)
	if opts.DeleteHorizon {
		attrs |= AttrDeleteHorizon
	}
	be := binary.BigEndian
	be.PutUint64(buf[offBaseOffset:], uint64(opts.BaseOffset))
	be.PutUint32(buf[offLength:], uint32(len(buf)-LengthFieldEnd))
	be.PutUint32(buf[offLeaderEpoch:], uint32(opts.LeaderEpoch))
	buf[offMagic] = 2
	be.PutUint16(buf[offAttributes:], uint16(attrs))
	be.PutUint32(buf[offLastDelta:], uint32(lastOffsetDelta))
	be.PutUint64(buf[offBaseTimestamp:], uint64(opts.BaseTimestamp))
	be.PutUint64(buf[offMaxTimestamp:], uint64(maxTimestamp))
	be.PutUint64(buf[offProducerID:], uint64(opts.ProducerID))
	be.PutUint16(buf[offProducerEpoch:], uint16(opts.ProducerEpoch))
	be.PutUint32(buf[offBaseSequence:], uint32(opts.BaseSequence))
	be.PutUint32(buf[offRecordCount:], uint32(count))
	out := Batch(buf)
	out.UpdateCRC()
	return out, nil
}

// AppendRecord appends one encoded record, its length prefix included, to
// dst (attributes 0, as Kafka writes them).
func AppendRecord(dst []byte, tsDelta int64, offsetDelta int32, key, value []byte, headers []kmsg.Header) []byte {
	n := 1 + varintLen(tsDelta) + varintLen(int64(offsetDelta)) + fieldLen(key) + fieldLen(value) + varintLen(int64(len(headers)))
	for _, h := range headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + fieldLen(h.Value)
	}
	dst = binary.AppendVarint(dst, int64(n))
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, int64(offsetDelta))
	dst = appendField(dst, key)
	dst = appendField(dst, value)
	dst = binary.AppendVarint(dst, int64(len(headers)))
	for _, h := range headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendField(dst, h.Value)
	}
	return dst
}

// varintLen is the size of x as a zigzag varint.
func varintLen(x int64) int {
	u := uint64(x<<1) ^ uint64(x>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// fieldLen is the size of a length-prefixed field; nil is null (-1).
func fieldLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendField(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}
