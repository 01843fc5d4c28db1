// Package producer keeps the idempotent-producer state of one partition: for
// every producer id, its epoch and the sequence numbers and offsets of its
// last five batches, as Kafka's ProducerStateManager does. It decides
// whether a batch is new, a retried duplicate (answered with its original
// offsets and not written again), out of order, or from a fenced epoch.
//
// The state is a pure function of the log: it is rebuilt from batch headers
// on start, starting from a snapshot taken when a segment rolled.
//
// Snapshot format (big-endian):
//
//	"EPS1" | offset int64 | count int32 |
//	count x ( producerId int64 | epoch int16 | lastTimestamp int64 |
//	          n int8 | n x ( firstSeq int32 | lastSeq int32 |
//	                         firstOffset int64 | lastOffset int64 | maxTimestamp int64 ) ) |
//	crc32c of everything before it (uint32)
package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"

	"github.com/eddybroker/eddy/appliance/record"
)

// BatchesToRetain is how many recent batches per producer are remembered
// for duplicate detection; clients cap in-flight requests to match.
const BatchesToRetain = 5

// BatchMeta describes one appended batch of a producer.
type BatchMeta struct {
	FirstSeq, LastSeq       int32
	FirstOffset, LastOffset int64
	MaxTimestamp            int64
}

// Entry is one producer's state.
type Entry struct {
	Epoch         int16
	Batches       []BatchMeta // oldest first, at most BatchesToRetain
	LastTimestamp int64
}

// State is a partition's producer state. It is not safe for concurrent use.
type State struct {
	m map[int64]*Entry
}

// New returns an empty state.
func New() *State { return &State{m: map[int64]*Entry{}} }

// Outcome is the verdict on a batch.
type Outcome int

// The verdicts of Check.
const (
	Accept     Outcome = iota // a new batch: append it
	Duplicate                 // a retry of a batch already appended
	OutOfOrder                // a gap or a repeat beyond the window
	Fenced                    // an older epoch than the producer's current one
)

// Verdict is the result of Check.
type Verdict struct {
	Outcome
	Original BatchMeta // for Duplicate: where the batch landed
	Reason   string
}

// NextSeq returns the sequence number after s, wrapping at int32 as Kafka
// does.
func NextSeq(s int32) int32 {
	if s == math.MaxInt32 {
		return 0
	}
	return s + 1
}

// Check judges a batch of producer pid at epoch carrying sequence numbers
// firstSeq..lastSeq.
func (s *State) Check(pid int64, epoch int16, firstSeq, lastSeq int32) Verdict {
	e, ok := s.m[pid]
	if !ok {
		// An unknown producer (new, or expired): any first sequence.
		return Verdict{Outcome: Accept}
	}
	switch {
	case epoch < e.Epoch:
		return Verdict{Outcome: Fenced, Reason: fmt.Sprintf("producer %d epoch %d is older than the current epoch %d", pid, epoch, e.Epoch)}
	case epoch > e.Epoch:
		if firstSeq != 0 {
			return Verdict{Outcome: OutOfOrder, Reason: fmt.Sprintf("producer %d: a new epoch %d must start at sequence 0, got %d", pid, epoch, firstSeq)}
		}
		return Verdict{Outcome: Accept}
	}
	for _, b := range e.Batches {
		// A retry ends where a retained batch ends: within an epoch a
		// producer's sequences only grow, so no other batch can. Its first
		// sequence is the stored one's, or differs when a produce
		// transform dropped or added records and the batch stored (which
		// the state is rebuilt from after a restart) was renumbered to end
		// there.
		if b.LastSeq == lastSeq && seqNotAfter(firstSeq, lastSeq) {
			return Verdict{Outcome: Duplicate, Original: b}
		}
	}
	if len(e.Batches) == 0 {
		return Verdict{Outcome: Accept}
	}
	last := e.Batches[len(e.Batches)-1].LastSeq
	if firstSeq != NextSeq(last) {
		return Verdict{Outcome: OutOfOrder, Reason: fmt.Sprintf("producer %d epoch %d: expected sequence %d, got %d", pid, epoch, NextSeq(last), firstSeq)}
	}
	return Verdict{Outcome: Accept}
}

// seqNotAfter reports a <= b for sequences, which wrap at 2^31: a is at
// most half the sequence space before b.
func seqNotAfter(a, b int32) bool {
	d := (int64(b) - int64(a) + 1<<31) % (1 << 31)
	return d < 1<<30
}

// Update records an appended batch.
func (s *State) Update(pid int64, epoch int16, b BatchMeta) {
	e, ok := s.m[pid]
	if !ok {
		e = &Entry{Epoch: epoch}
		s.m[pid] = e
	}
	if epoch != e.Epoch {
		e.Epoch = epoch
		e.Batches = e.Batches[:0]
	}
	if len(e.Batches) == BatchesToRetain {
		copy(e.Batches, e.Batches[1:])
		e.Batches = e.Batches[:BatchesToRetain-1]
	}
	e.Batches = append(e.Batches, b)
	e.LastTimestamp = max(e.LastTimestamp, b.MaxTimestamp)
}

// Apply updates the state from a stored batch header (replay at start).
// Batches without a producer id are ignored.
func (s *State) Apply(hdr record.Batch) {
	pid := hdr.ProducerID()
	if pid < 0 || hdr.IsControl() {
		return
	}
	s.Update(pid, hdr.ProducerEpoch(), BatchMeta{
		FirstSeq: hdr.BaseSequence(), LastSeq: hdr.LastSequence(),
		FirstOffset: hdr.BaseOffset(), LastOffset: hdr.LastOffset(), MaxTimestamp: hdr.MaxTimestamp(),
	})
}

// Entry returns a producer's state.
func (s *State) Entry(pid int64) (Entry, bool) {
	e, ok := s.m[pid]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Len returns the number of producers tracked.
func (s *State) Len() int { return len(s.m) }

// Expire forgets producers whose last batch is older than beforeMs
// (producer.id.expiration.ms).
func (s *State) Expire(beforeMs int64) int {
	n := 0
	for pid, e := range s.m {
		if e.LastTimestamp < beforeMs {
			delete(s.m, pid)
			n++
		}
	}
	return n
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const snapshotMagic = "EPS1"

// ErrBadSnapshot marks a snapshot that does not decode.
var ErrBadSnapshot = errors.New("producer: bad snapshot")

// Encode serialises the state as of offset.
func (s *State) Encode(offset int64) []byte {
	pids := make([]int64, 0, len(s.m))
	for pid := range s.m {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	b := append([]byte(nil), snapshotMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(pids)))
	for _, pid := range pids {
		e := s.m[pid]
		b = binary.BigEndian.AppendUint64(b, uint64(pid))
		b = binary.BigEndian.AppendUint16(b, uint16(e.Epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.LastTimestamp))
		b = append(b, byte(len(e.Batches)))
		for _, m := range e.Batches {
			b = binary.BigEndian.AppendUint32(b, uint32(m.FirstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.LastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.FirstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.LastOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.MaxTimestamp))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Decode parses a snapshot, returning the offset it was taken at.
func Decode(buf []byte) (int64, *State, error) {
	if len(buf) < len(snapshotMagic)+8+4+4 || string(buf[:4]) != snapshotMagic {
		return 0, nil, fmt.Errorf("%w: missing header", ErrBadSnapshot)
	}
	body, sum := buf[:len(buf)-4], binary.BigEndian.Uint32(buf[len(buf)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	p := body[4:]
	offset := int64(binary.BigEndian.Uint64(p))
	n := binary.BigEndian.Uint32(p[8:])
	p = p[12:]
	s := New()
	for i := uint32(0); i < n; i++ {
		if len(p) < 19 {
			return 0, nil, fmt.Errorf("%w: entry %d truncated", ErrBadSnapshot, i)
		}
		pid := int64(binary.BigEndian.Uint64(p))
		e := &Entry{Epoch: int16(binary.BigEndian.Uint16(p[8:])), LastTimestamp: int64(binary.BigEndian.Uint64(p[10:]))}
		nb := int(p[18])
		p = p[19:]
		if nb > BatchesToRetain || len(p) < nb*32 {
			return 0, nil, fmt.Errorf("%w: entry %d has %d batches", ErrBadSnapshot, i, nb)
		}
		for j := 0; j < nb; j++ {
			e.Batches = append(e.Batches, BatchMeta{
				FirstSeq: int32(binary.BigEndian.Uint32(p)), LastSeq: int32(binary.BigEndian.Uint32(p[4:])),
				FirstOffset: int64(binary.BigEndian.Uint64(p[8:])), LastOffset: int64(binary.BigEndian.Uint64(p[16:])),
				MaxTimestamp: int64(binary.BigEndian.Uint64(p[24:])),
			})
			p = p[32:]
		}
		s.m[pid] = e
	}
	if len(p) != 0 {
		return 0, nil, fmt.Errorf("%w: %d trailing bytes", ErrBadSnapshot, len(p))
	}
	return offset, s, nil
}
