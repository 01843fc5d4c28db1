package partlog

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// value is the payload of record i of a test workload: self-describing so a
// misplaced record is recognisable.
func value(tag string, i int64, size int) []byte {
	v := fmt.Appendf(nil, "%s-%08d|", tag, i)
	for len(v) < size {
		v = append(v, byte('a'+i%26))
	}
	return v
}

// mkBatch builds a batch of n records starting at logical record number
// first, with timestamps ts, ts+1, ...
func mkBatch(t testing.TB, tag string, first int64, n, size int, ts int64) []byte {
	t.Helper()
	recs := make([]record.Simple, n)
	for i := range recs {
		recs[i] = record.Simple{Key: fmt.Appendf(nil, "k%d", first+int64(i)), Value: value(tag, first+int64(i), size), TimestampDelta: int64(i)}
	}
	b, err := record.Build(record.BatchOptions{BaseTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testConfig is a small-segment config so tests roll often.
func testConfig(name string) Config {
	c := DefaultConfig(name)
	c.SegmentBytes = 4 << 10
	c.IndexIntervalBytes = 256
	c.RetentionMs = -1
	c.VerifyReads = true
	return c
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func openLog(t testing.TB, fsys vfs.FS, dir string, cfg Config, committer *flush.Committer, clean bool) (*Log, RecoveryReport) {
	t.Helper()
	l, rep, err := Open(fsys, dir, cfg, Options{Committer: committer, Clean: clean})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l, rep
}

// readRecords reads every record from the log start to the HW, checking
// each batch's CRC and that offsets are contiguous. It returns the values by
// offset.
func readRecords(t testing.TB, l *Log, contiguous bool) map[int64][]byte {
	t.Helper()
	out := map[int64][]byte{}
	off := l.Offsets()
	next := off.LogStart
	for next < off.HW {
		res, err := l.Read(next, 64<<10, false)
		if err != nil {
			t.Fatalf("read at %d: %v", next, err)
		}
		if len(res.Data) == 0 {
			t.Fatalf("read at %d below HW %d returned nothing", next, off.HW)
		}
		for buf := res.Data; len(buf) > 0; {
			b, err := record.Check(buf)
			if err != nil {
				t.Fatalf("read at %d returned a bad batch: %v", next, err)
			}
			buf = buf[len(b):]
			err = b.EachRecord(0, func(r *record.Record) error {
				if r.Offset < next {
					return nil // the head of a batch that starts before the fetch offset
				}
				if contiguous && r.Offset != next {
					return fmt.Errorf("offset %d follows %d", r.Offset, next-1)
				}
				out[r.Offset] = append([]byte(nil), r.Value...)
				next = r.Offset + 1
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func mustAppend(t testing.TB, l *Log, b []byte) AppendResult {
	t.Helper()
	res, err := l.Append(b, 0)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res
}

func checkValue(t testing.TB, got map[int64][]byte, off int64, want []byte) {
	t.Helper()
	if g, ok := got[off]; !ok || !bytes.Equal(g, want) {
		t.Fatalf("offset %d: got %q, want %q", off, g, want)
	}
}

func isOutOfRange(err error) bool { return errors.Is(err, ErrOffsetOutOfRange) }
