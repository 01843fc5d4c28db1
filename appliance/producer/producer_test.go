package producer

import (
	"errors"
	"testing"
)

func meta(first, last int32, off int64) BatchMeta {
	return BatchMeta{FirstSeq: first, LastSeq: last, FirstOffset: off, LastOffset: off + int64(last-first), MaxTimestamp: off}
}

func TestSequenceRules(t *testing.T) {
	s := New()
	steps := []struct {
		name        string
		pid         int64
		epoch       int16
		first, last int32
		want        Outcome
		update      bool
	}{
		{"unknown producer, any sequence", 1, 0, 7, 9, Accept, true},
		{"next in order", 1, 0, 10, 14, Accept, true},
		{"retry of the last", 1, 0, 10, 14, Duplicate, false},
		{"retry of the first", 1, 0, 7, 9, Duplicate, false},
		{"gap", 1, 0, 16, 16, OutOfOrder, false},
		{"repeat with other bounds", 1, 0, 10, 12, OutOfOrder, false},
		{"older epoch", 1, -1, 15, 15, Fenced, false},
		{"newer epoch must start at 0", 1, 1, 15, 15, OutOfOrder, false},
		{"newer epoch at 0", 1, 1, 0, 3, Accept, true},
		{"old epoch now fenced", 1, 0, 15, 15, Fenced, false},
		{"other producer is independent", 2, 0, 100, 100, Accept, true},
	}
	for _, st := range steps {
		v := s.Check(st.pid, st.epoch, st.first, st.last)
		if v.Outcome != st.want {
			t.Fatalf("%s: got %v (%s), want %v", st.name, v.Outcome, v.Reason, st.want)
		}
		if st.update {
			s.Update(st.pid, st.epoch, meta(st.first, st.last, int64(st.first)))
		}
	}
	if v := s.Check(1, 1, 0, 3); v.Outcome != Duplicate || v.Original.FirstOffset != 0 {
		t.Fatalf("duplicate must report the original offsets: %+v", v)
	}
}

// A batch a produce transform changed is stored renumbered to end at the
// producer's last sequence, and after a restart the state is rebuilt from
// what was stored: a retry of the producer's batch is a duplicate whether
// the transform dropped records (the stored batch starts later) or added
// some (it starts earlier).
func TestRetryOfATransformedBatch(t *testing.T) {
	for _, c := range []struct {
		name          string
		stored, first int32
	}{
		{"records dropped", 12, 10},
		{"records added", 6, 10},
		{"as sent", 10, 10},
	} {
		s := New()
		s.Update(1, 0, meta(0, 9, 0))
		s.Update(1, 0, meta(c.stored, 14, 10))
		if v := s.Check(1, 0, c.first, 14); v.Outcome != Duplicate || v.Original.FirstOffset != 10 {
			t.Fatalf("%s: retry of 10..14 stored as %d..14: %v (%s)", c.name, c.stored, v.Outcome, v.Reason)
		}
		if v := s.Check(1, 0, 15, 16); v.Outcome != Accept {
			t.Fatalf("%s: the next batch: %v (%s)", c.name, v.Outcome, v.Reason)
		}
	}
}

func TestWindowOfFive(t *testing.T) {
	s := New()
	for i := int32(0); i < 7; i++ {
		s.Update(1, 0, meta(i, i, int64(i)))
	}
	if v := s.Check(1, 0, 2, 2); v.Outcome != Duplicate {
		t.Fatalf("batch 2 is within the last five: %v", v.Outcome)
	}
	if v := s.Check(1, 0, 1, 1); v.Outcome != OutOfOrder {
		t.Fatalf("batch 1 fell out of the window: %v", v.Outcome)
	}
}

func TestSequenceWraps(t *testing.T) {
	s := New()
	s.Update(1, 0, meta(1<<31-3, 1<<31-1, 0))
	if v := s.Check(1, 0, 0, 4); v.Outcome != Accept {
		t.Fatalf("sequence after MaxInt32 is 0: %v %s", v.Outcome, v.Reason)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := New()
	for pid := int64(1); pid <= 3; pid++ {
		for i := int32(0); i < 6; i++ {
			s.Update(pid, int16(pid), meta(i*10, i*10+9, int64(i)*10))
		}
	}
	buf := s.Encode(1234)
	off, got, err := Decode(buf)
	if err != nil || off != 1234 || got.Len() != 3 {
		t.Fatalf("decode: %d %v %v", off, got.Len(), err)
	}
	for pid := int64(1); pid <= 3; pid++ {
		a, _ := s.Entry(pid)
		b, _ := got.Entry(pid)
		if a.Epoch != b.Epoch || len(a.Batches) != len(b.Batches) || a.Batches[4] != b.Batches[4] {
			t.Fatalf("producer %d differs after round trip", pid)
		}
	}
	buf[10] ^= 1
	if _, _, err := Decode(buf); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("corrupt snapshot: %v", err)
	}
	if _, _, err := Decode(buf[:7]); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("short snapshot: %v", err)
	}
}

func TestExpire(t *testing.T) {
	s := New()
	s.Update(1, 0, BatchMeta{MaxTimestamp: 100})
	s.Update(2, 0, BatchMeta{MaxTimestamp: 300})
	if n := s.Expire(200); n != 1 || s.Len() != 1 {
		t.Fatalf("expired %d, %d left", n, s.Len())
	}
}
