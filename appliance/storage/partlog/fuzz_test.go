package partlog

import (
	"path/filepath"
	"testing"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// FuzzRecoverTail appends arbitrary bytes to the active segment after an
// unclean stop and reopens: recovery must keep every valid batch before
// them, never serve a bad batch, and leave a log that takes appends.
func FuzzRecoverTail(f *testing.F) {
	valid := mkBatch(f, "v", 10, 2, 40, 100)
	record.Batch(valid).SetBaseOffset(10)
	f.Add([]byte{})
	f.Add(make([]byte, 100))
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(append(append([]byte(nil), valid...), 1, 2, 3))
	f.Fuzz(func(t *testing.T, tail []byte) {
		mem := vfs.NewMem()
		cfg := testConfig("t-0")
		cfg.SegmentBytes = 1 << 20
		l, _ := openLog(t, mem, "/d/t-0", cfg, nil, false)
		for i := int64(0); i < 5; i++ {
			mustAppend(t, l, mkBatch(t, "v", 2*i, 2, 40, i))
		}
		l.Close()
		fl, err := mem.OpenRW(filepath.Join("/d/t-0", segment.Name(0, segment.LogSuffix)))
		if err != nil {
			t.Fatal(err)
		}
		fl.Write(tail)
		fl.Close()
		l, _, err = Open(mem, "/d/t-0", cfg, Options{})
		if err != nil {
			t.Fatalf("open after a damaged tail: %v", err)
		}
		defer l.Close()
		off := l.Offsets()
		if off.LEO < 10 {
			t.Fatalf("recovery lost valid batches: %+v", off)
		}
		got := readRecords(t, l, false)
		for o := int64(0); o < 10; o++ {
			checkValue(t, got, o, value("v", o, 40))
		}
		if res := mustAppend(t, l, mkBatch(t, "w", off.LEO, 1, 10, 0)); res.BaseOffset != off.LEO {
			t.Fatalf("append after recovery at %d, want %d", res.BaseOffset, off.LEO)
		}
	})
}
