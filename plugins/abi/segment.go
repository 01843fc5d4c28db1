package abi

import "fmt"

// SegmentMetaSize is the length of a SegmentMeta in v1.0. Hosts append
// fields only; guests read the fields they know and ignore a longer tail.
//
//	 0  i64 base_offset           8  i64 last_offset
//	16  i64 min_timestamp_ms     24  i64 max_timestamp_ms
//	32  i64 size_bytes           40  u32 record_count    44 u32 flags
//	48  i64 now_ms               56  i64 partition_size_bytes
//	64  i64 log_start_offset     72  i64 retention_ms    (-1 = unlimited)
//	80  i64 retention_bytes      (-1 = unlimited)
//	88  i64 federated_upto       (-1 = the topic is not federated)
const SegmentMetaSize = 96

// SegmentMeta flag bits.
const (
	SegmentActive        uint32 = 1 << 0 // the active (open) segment; the host never touches it
	SegmentHasTombstones uint32 = 1 << 1
)

// SegmentMeta describes one segment to eddy_cleanup_segment.
type SegmentMeta struct {
	BaseOffset         int64
	LastOffset         int64
	MinTimestamp       int64
	MaxTimestamp       int64
	SizeBytes          int64
	RecordCount        uint32
	Flags              uint32
	NowMs              int64
	PartitionSizeBytes int64
	LogStartOffset     int64
	RetentionMs        int64
	RetentionBytes     int64
	FederatedUpto      int64
}

// Encode returns the 96-byte little-endian form.
func (m SegmentMeta) Encode() []byte {
	b := make([]byte, SegmentMetaSize)
	m.EncodeInto(b)
	return b
}

// EncodeInto writes the 96-byte form into b, which must hold that many.
func (m SegmentMeta) EncodeInto(b []byte) {
	b = b[:SegmentMetaSize]
	le.PutUint64(b[0:], uint64(m.BaseOffset))
	le.PutUint64(b[8:], uint64(m.LastOffset))
	le.PutUint64(b[16:], uint64(m.MinTimestamp))
	le.PutUint64(b[24:], uint64(m.MaxTimestamp))
	le.PutUint64(b[32:], uint64(m.SizeBytes))
	le.PutUint32(b[40:], m.RecordCount)
	le.PutUint32(b[44:], m.Flags)
	le.PutUint64(b[48:], uint64(m.NowMs))
	le.PutUint64(b[56:], uint64(m.PartitionSizeBytes))
	le.PutUint64(b[64:], uint64(m.LogStartOffset))
	le.PutUint64(b[72:], uint64(m.RetentionMs))
	le.PutUint64(b[80:], uint64(m.RetentionBytes))
	le.PutUint64(b[88:], uint64(m.FederatedUpto))
}

// DecodeSegmentMeta reads a SegmentMeta; b may be longer (a newer minor).
func DecodeSegmentMeta(b []byte) (SegmentMeta, error) {
	if len(b) < SegmentMetaSize {
		return SegmentMeta{}, fmt.Errorf("%w: segment meta of %d bytes, want at least %d", ErrLayout, len(b), SegmentMetaSize)
	}
	return SegmentMeta{
		BaseOffset:         int64(le.Uint64(b[0:])),
		LastOffset:         int64(le.Uint64(b[8:])),
		MinTimestamp:       int64(le.Uint64(b[16:])),
		MaxTimestamp:       int64(le.Uint64(b[24:])),
		SizeBytes:          int64(le.Uint64(b[32:])),
		RecordCount:        le.Uint32(b[40:]),
		Flags:              le.Uint32(b[44:]),
		NowMs:              int64(le.Uint64(b[48:])),
		PartitionSizeBytes: int64(le.Uint64(b[56:])),
		LogStartOffset:     int64(le.Uint64(b[64:])),
		RetentionMs:        int64(le.Uint64(b[72:])),
		RetentionBytes:     int64(le.Uint64(b[80:])),
		FederatedUpto:      int64(le.Uint64(b[88:])),
	}, nil
}

// Active reports whether the segment is the active one.
func (m SegmentMeta) Active() bool { return m.Flags&SegmentActive != 0 }
