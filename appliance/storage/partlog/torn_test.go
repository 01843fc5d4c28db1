package partlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// tornFixture writes 30 batches of 2 records to a real directory and closes
// the log; it returns the directory, the last segment's path and the byte
// position of each batch in that segment.
func tornFixture(t *testing.T) (dir, lastLog string, lastBatches []int64) {
	dir = t.TempDir()
	l, _ := openLog(t, vfs.OS, dir, testConfig("t-0"), nil, false)
	for i := int64(0); i < 30; i++ {
		mustAppend(t, l, mkBatch(t, "v", 2*i, 2, 300, i))
	}
	last := l.active().Base()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lastLog = filepath.Join(dir, segment.Name(last, segment.LogSuffix))
	data, err := os.ReadFile(lastLog)
	if err != nil {
		t.Fatal(err)
	}
	for pos := int64(0); pos < int64(len(data)); {
		lastBatches = append(lastBatches, pos)
		n, _ := record.PeekSize(data[pos:])
		pos += int64(n)
	}
	if len(lastBatches) < 3 {
		t.Fatalf("fixture's last segment holds only %d batches", len(lastBatches))
	}
	return dir, lastLog, lastBatches
}

func TestTornTails(t *testing.T) {
	type damage func(t *testing.T, dir, path string, batches []int64) (keptBatchesInLast int)
	cases := map[string]damage{
		"truncated mid-batch": func(t *testing.T, dir, path string, b []int64) int {
			last := b[len(b)-1]
			if err := os.Truncate(path, last+30); err != nil {
				t.Fatal(err)
			}
			return len(b) - 1
		},
		"truncated mid-header": func(t *testing.T, dir, path string, b []int64) int {
			if err := os.Truncate(path, b[len(b)-1]+7); err != nil {
				t.Fatal(err)
			}
			return len(b) - 1
		},
		"zero-filled tail": func(t *testing.T, dir, path string, b []int64) int {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, 8192))
			f.Close()
			return len(b)
		},
		"zeroed last batch": func(t *testing.T, dir, path string, b []int64) int {
			st, _ := os.Stat(path)
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt(make([]byte, st.Size()-b[len(b)-2]), b[len(b)-2])
			f.Close()
			return len(b) - 2
		},
		"bit flip in last batch": func(t *testing.T, dir, path string, b []int64) int {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			one := make([]byte, 1)
			f.ReadAt(one, b[len(b)-1]+100)
			one[0] ^= 0x10
			f.WriteAt(one, b[len(b)-1]+100)
			f.Close()
			return len(b) - 1
		},
		"bit flip in a middle batch": func(t *testing.T, dir, path string, b []int64) int {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			one := make([]byte, 1)
			f.ReadAt(one, b[1]+80)
			one[0] ^= 0x01
			f.WriteAt(one, b[1]+80)
			f.Close()
			return 1
		},
		"index files deleted": func(t *testing.T, dir, path string, b []int64) int {
			names, _ := os.ReadDir(dir)
			for _, n := range names {
				if strings.HasSuffix(n.Name(), ".index") || strings.HasSuffix(n.Name(), ".timeindex") {
					os.Remove(filepath.Join(dir, n.Name()))
				}
			}
			return len(b)
		},
		"garbage index files": func(t *testing.T, dir, path string, b []int64) int {
			names, _ := os.ReadDir(dir)
			for _, n := range names {
				if strings.HasSuffix(n.Name(), ".index") {
					os.WriteFile(filepath.Join(dir, n.Name()), []byte("0123456789abcdef"), 0o644)
				}
			}
			return len(b)
		},
	}
	for name, dmg := range cases {
		for _, clean := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/clean=%v", name, clean), func(t *testing.T) {
				dir, path, batches := tornFixture(t)
				kept := dmg(t, dir, path, batches)
				l, rep := openLog(t, vfs.OS, dir, testConfig("t-0"), nil, clean)
				defer l.Close()
				if clean && name == "bit flip in a middle batch" {
					// After a clean shutdown only the tail past the last
					// index entry is re-checked at open; damage deeper in
					// is caught when read, and never served.
					first := l.active().Base()
					got := map[int64][]byte{}
					for o := int64(0); o < first+2; o++ {
						res, err := l.Read(o, 1, false)
						if err != nil {
							t.Fatalf("read at %d: %v", o, err)
						}
						b, _ := record.Check(res.Data)
						b.EachRecord(0, func(r *record.Record) error { got[r.Offset] = append([]byte(nil), r.Value...); return nil })
					}
					for o := int64(0); o < first+2; o++ {
						checkValue(t, got, o, value("v", o, 300))
					}
					if _, err := l.Read(first+2, 1, false); !errors.Is(err, segment.ErrCorrupt) {
						t.Fatalf("read of the damaged batch: %v; want a corruption error", err)
					}
					return
				}
				segs := l.SegmentCount()
				first := l.active().Base()
				// Records of earlier segments plus the kept batches of the last.
				wantLEO := first + int64(2*kept)
				if off := l.Offsets(); off.LEO != wantLEO || off.HW != wantLEO {
					t.Fatalf("after recovery %+v, want LEO %d (report %+v)", off, wantLEO, rep)
				}
				got := readRecords(t, l, true)
				for o := int64(0); o < wantLEO; o++ {
					checkValue(t, got, o, value("v", o, 300))
				}
				if len(got) != int(wantLEO) {
					t.Fatalf("read %d records, want %d", len(got), wantLEO)
				}
				// The log takes appends right after the last valid batch.
				if res := mustAppend(t, l, mkBatch(t, "w", wantLEO, 1, 10, 99)); res.BaseOffset != wantLEO {
					t.Fatalf("append after recovery at %d, want %d", res.BaseOffset, wantLEO)
				}
				if l.SegmentCount() != segs {
					t.Fatalf("segment count changed from %d to %d", segs, l.SegmentCount())
				}
			})
		}
	}
}

func TestCorruptMiddleSegmentDropsLaterOnes(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, vfs.OS, dir, testConfig("t-0"), nil, false)
	for i := int64(0); i < 40; i++ {
		mustAppend(t, l, mkBatch(t, "v", 2*i, 2, 300, i))
	}
	bases := []int64{}
	for _, s := range l.mu.segs {
		bases = append(bases, s.Base())
	}
	l.Close()
	if len(bases) < 4 {
		t.Fatal("need four segments")
	}
	// Corrupt the second segment and make recovery scan from the first.
	p := filepath.Join(dir, segment.Name(bases[1], segment.LogSuffix))
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0xff
	os.WriteFile(p, data, 0o644)
	os.WriteFile(filepath.Join(dir, checkpointFile), checkpoint{recoveryPoint: 0}.encode(), 0o644)
	l, rep := openLog(t, vfs.OS, dir, testConfig("t-0"), nil, false)
	defer l.Close()
	if rep.DeletedSegments != len(bases)-2 || l.SegmentCount() != 2 {
		t.Fatalf("report %+v, %d segments left; want the segments after the damage deleted", rep, l.SegmentCount())
	}
	got := readRecords(t, l, true)
	leo := l.Offsets().LEO
	if leo <= bases[1] || leo >= bases[2] {
		t.Fatalf("LEO %d, want inside the damaged segment [%d, %d)", leo, bases[1], bases[2])
	}
	for o := int64(0); o < leo; o++ {
		checkValue(t, got, o, value("v", o, 300))
	}
}
