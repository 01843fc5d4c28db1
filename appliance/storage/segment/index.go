package segment

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Index entry sizes, as in Kafka's .index and .timeindex files.
const (
	offsetEntrySize = 8  // int32 relative offset, int32 position
	timeEntrySize   = 12 // int64 timestamp, int32 relative offset
)

// offsetEntry maps the last offset of a batch (relative to the segment base)
// to the file position where that batch starts.
type offsetEntry struct {
	rel uint32
	pos uint32
}

// timeEntry records the largest timestamp seen up to a relative offset.
type timeEntry struct {
	ts  int64
	rel uint32
}

func encodeOffsetIndex(es []offsetEntry) []byte {
	buf := make([]byte, len(es)*offsetEntrySize)
	for i, e := range es {
		binary.BigEndian.PutUint32(buf[i*8:], e.rel)
		binary.BigEndian.PutUint32(buf[i*8+4:], e.pos)
	}
	return buf
}

func encodeTimeIndex(es []timeEntry) []byte {
	buf := make([]byte, len(es)*timeEntrySize)
	for i, e := range es {
		binary.BigEndian.PutUint64(buf[i*12:], uint64(e.ts))
		binary.BigEndian.PutUint32(buf[i*12+8:], e.rel)
	}
	return buf
}

// decodeOffsetIndex parses and sanity-checks an offset index against the
// log it indexes: entries strictly increase and point inside the log.
func decodeOffsetIndex(buf []byte, logSize int64) ([]offsetEntry, error) {
	if len(buf)%offsetEntrySize != 0 {
		return nil, fmt.Errorf("offset index size %d is not a multiple of %d", len(buf), offsetEntrySize)
	}
	es := make([]offsetEntry, len(buf)/offsetEntrySize)
	for i := range es {
		e := offsetEntry{rel: binary.BigEndian.Uint32(buf[i*8:]), pos: binary.BigEndian.Uint32(buf[i*8+4:])}
		if int64(e.pos) >= logSize {
			return nil, fmt.Errorf("offset index entry %d points at position %d past the log's %d bytes", i, e.pos, logSize)
		}
		if i > 0 && (e.rel <= es[i-1].rel || e.pos <= es[i-1].pos) {
			return nil, fmt.Errorf("offset index entry %d does not increase", i)
		}
		if e.rel > maxRel {
			return nil, fmt.Errorf("offset index entry %d has relative offset %d out of range", i, e.rel)
		}
		es[i] = e
	}
	return es, nil
}

func decodeTimeIndex(buf []byte) ([]timeEntry, error) {
	if len(buf)%timeEntrySize != 0 {
		return nil, fmt.Errorf("time index size %d is not a multiple of %d", len(buf), timeEntrySize)
	}
	es := make([]timeEntry, len(buf)/timeEntrySize)
	for i := range es {
		e := timeEntry{ts: int64(binary.BigEndian.Uint64(buf[i*12:])), rel: binary.BigEndian.Uint32(buf[i*12+8:])}
		if i > 0 && (e.ts < es[i-1].ts || e.rel < es[i-1].rel) {
			return nil, fmt.Errorf("time index entry %d does not increase", i)
		}
		if e.rel > maxRel {
			return nil, fmt.Errorf("time index entry %d has relative offset %d out of range", i, e.rel)
		}
		es[i] = e
	}
	return es, nil
}

// floorOffset returns the position of the greatest entry whose offset is at
// most rel, or 0 when there is none.
func floorOffset(es []offsetEntry, rel uint32) int64 {
	i := sort.Search(len(es), func(i int) bool { return es[i].rel > rel })
	if i == 0 {
		return 0
	}
	return int64(es[i-1].pos)
}

// floorTime returns the relative offset of the last entry with a timestamp
// below ts, and whether there is one. Every record with a timestamp >= ts
// lies after that offset.
func floorTime(es []timeEntry, ts int64) (uint32, bool) {
	i := sort.Search(len(es), func(i int) bool { return es[i].ts >= ts })
	if i == 0 {
		return 0, false
	}
	return es[i-1].rel, true
}
