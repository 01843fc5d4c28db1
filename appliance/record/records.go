package record

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record is one decoded record with its absolute offset and timestamp.
type Record struct {
	kmsg.Record
	Offset    int64 // batch base offset + offset delta
	Timestamp int64 // batch base timestamp + timestamp delta
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
	for n := int32(0); len(raw) > 0; n++ {
		if n >= b.RecordCount() {
			return fmt.Errorf("%w: %d bytes after the %d records the header counts", ErrInvalid, len(raw), n)
		}
		size, err := DecodeRecord(raw, &r.Record)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, n, err)
		}
		r.Offset = base + int64(r.OffsetDelta)
		r.Timestamp = ts + r.TimestampDelta64
		if err := fn(&r); err != nil {
			return err
		}
		raw = raw[size:]
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

// BuildRaw wraps already encoded, uncompressed records into a batch,
// compressing them with opts.Codec.
func BuildRaw(opts BatchOptions, raw []byte, count, lastOffsetDelta int32, maxTimestamp int64) ([]byte, error) {
	if opts.Codec != CodecNone {
		var err error
		raw, err = Compress(opts.Codec, raw)
		if err != nil {
			return nil, err
		}
	}
	attrs := opts.Attributes&^AttrCodecMask | int16(opts.Codec)
	if opts.DeleteHorizon {
		attrs |= AttrDeleteHorizon
	}
	kb := kmsg.RecordBatch{
		FirstOffset:          opts.BaseOffset,
		Length:               int32(HeaderSize - LengthFieldEnd + len(raw)),
		PartitionLeaderEpoch: opts.LeaderEpoch,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      lastOffsetDelta,
		FirstTimestamp:       opts.BaseTimestamp,
		MaxTimestamp:         maxTimestamp,
		ProducerID:           opts.ProducerID,
		ProducerEpoch:        opts.ProducerEpoch,
		FirstSequence:        opts.BaseSequence,
		NumRecords:           count,
		Records:              raw,
	}
	out := Batch(kb.AppendTo(nil))
	out.UpdateCRC()
	return out, nil
}
