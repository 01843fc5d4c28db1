package partlog

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

func TestAppendReadRollReopen(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			dir := t.TempDir()
			c := flush.New(flush.Config{Mode: flush.Group, MaxDelay: time.Microsecond})
			defer c.Close()
			l, _ := openLog(t, vfs.OS, dir, testConfig("t-0"), c, false)
			var n int64
			for i := 0; i < 60; i++ {
				cnt := 1 + i%5
				res := mustAppend(t, l, mkBatch(t, "v", n, cnt, 100, 1000+n))
				if res.BaseOffset != n || res.LastOffset != n+int64(cnt)-1 {
					t.Fatalf("batch %d landed at %d..%d, want %d", i, res.BaseOffset, res.LastOffset, n)
				}
				n += int64(cnt)
			}
			off := l.Offsets()
			if off.LEO != n || off.HW != n || off.Durable != n || off.LogStart != 0 {
				t.Fatalf("offsets %+v, want LEO=HW=durable=%d", off, n)
			}
			if l.SegmentCount() < 3 {
				t.Fatalf("expected rolls with 4 KiB segments, have %d segments", l.SegmentCount())
			}
			got := readRecords(t, l, true)
			for i := int64(0); i < n; i++ {
				checkValue(t, got, i, value("v", i, 100))
			}
			if clean {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				// An unclean stop: drop the log without Close.
				for _, s := range l.mu.segs {
					s.Close()
				}
			}
			l2, rep := openLog(t, vfs.OS, dir, testConfig("t-0"), c, clean)
			defer l2.Close()
			if clean && rep.RecoveredSegments != 0 {
				t.Fatalf("clean open recovered %d segments", rep.RecoveredSegments)
			}
			if !clean && rep.RecoveredSegments != 1 {
				t.Fatalf("unclean open recovered %d segments, want only the active one", rep.RecoveredSegments)
			}
			if off2 := l2.Offsets(); off2.LEO != n {
				t.Fatalf("LEO after reopen %d, want %d", off2.LEO, n)
			}
			got = readRecords(t, l2, true)
			for i := int64(0); i < n; i++ {
				checkValue(t, got, i, value("v", i, 100))
			}
			res := mustAppend(t, l2, mkBatch(t, "v", n, 2, 100, 5000))
			if res.BaseOffset != n {
				t.Fatalf("append after reopen at %d, want %d", res.BaseOffset, n)
			}
		})
	}
}

func TestReadSemantics(t *testing.T) {
	l, _ := openLog(t, vfs.NewMem(), "/d/t-0", testConfig("t-0"), nil, false)
	defer l.Close()
	for i := int64(0); i < 10; i++ {
		mustAppend(t, l, mkBatch(t, "v", i*3, 3, 50, 100))
	}
	// Mid-batch fetch returns the whole batch holding the offset.
	res, err := l.Read(4, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := record.Check(res.Data)
	if err != nil || b.BaseOffset() != 3 || len(b) != len(res.Data) {
		t.Fatalf("read at 4 with max 1 byte: base %d, %d bytes (batch %d): %v", b.BaseOffset(), len(res.Data), len(b), err)
	}
	// maxBytes bounds whole batches.
	res, _ = l.Read(0, 2*len(b)+10, false)
	if cnt := countBatches(t, res.Data); cnt != 2 {
		t.Fatalf("read with room for two batches returned %d", cnt)
	}
	// At the LEO: nothing, no error. Past it: out of range.
	if res, err := l.Read(30, 1000, false); err != nil || len(res.Data) != 0 {
		t.Fatalf("read at LEO: %d bytes, %v", len(res.Data), err)
	}
	if _, err := l.Read(31, 1000, false); !isOutOfRange(err) {
		t.Fatalf("read past LEO: %v", err)
	}
	if _, err := l.Read(-1, 1000, false); !isOutOfRange(err) {
		t.Fatalf("read at -1: %v", err)
	}
}

func countBatches(t testing.TB, buf []byte) int {
	n := 0
	for len(buf) > 0 {
		b, err := record.Check(buf)
		if err != nil {
			t.Fatalf("batch %d: %v", n, err)
		}
		buf = buf[len(b):]
		n++
	}
	return n
}

func TestHighWatermarkWaitsForFlushInGroupMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A flush we hold back: the HW must not move before it.
		mem := vfs.NewMem()
		block := make(chan struct{})
		mem.SetInjector(func(op vfs.Op) error {
			if op.Kind == vfs.OpSync && strings.HasSuffix(op.Path, ".log") {
				<-block
			}
			return nil
		})
		c := flush.New(flush.Config{Mode: flush.Group, MaxDelay: time.Microsecond})
		defer c.Close()
		l, _ := openLog(t, mem, "/d/t-0", testConfig("t-0"), c, false)
		defer l.Close()
		done := make(chan error, 1)
		go func() { _, err := l.Append(mkBatch(t, "v", 0, 5, 10, 1), 0); done <- err }()
		synctest.Wait() // the append is written and its flush is stuck in fdatasync
		if off := l.Offsets(); off.LEO != 5 || off.HW != 0 || off.Durable != 0 {
			t.Fatalf("before the flush: %+v; want LEO 5 with HW and durable at 0", off)
		}
		if res, _ := l.Read(0, 1000, false); len(res.Data) != 0 {
			t.Fatal("a consumer read data that is not yet durable")
		}
		hw := l.HWChanged()
		close(block)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		<-hw
		if off := l.Offsets(); off.HW != 5 || off.Durable != 5 {
			t.Fatalf("after the flush: %+v", off)
		}
	})
}

func TestOffsetForTimestampAndMaxTimestamp(t *testing.T) {
	l, _ := openLog(t, vfs.NewMem(), "/d/t-0", testConfig("t-0"), nil, false)
	defer l.Close()
	// Batch i holds offsets 4i..4i+3 with timestamps 1000*i + 0..3,
	// except batch 7 whose records are far in the future.
	for i := int64(0); i < 20; i++ {
		ts := 1000 * i
		if i == 7 {
			ts = 1_000_000
		}
		mustAppend(t, l, mkBatch(t, "v", 4*i, 4, 200, ts))
	}
	cases := []struct {
		ts    int64
		off   int64
		found bool
	}{
		{-5, 0, true},
		{0, 0, true},
		{2, 2, true},
		{3, 3, true},
		{4, 4, true}, // first record of batch 1 has ts 1000 >= 4
		{5002, 22, true},
		{6004, 28, true}, // batch 7 (far future) is first with ts >= 6004
		{19003, 28, true},
		{1_000_003, 31, true},
		{1_000_004, 0, false},
	}
	for _, c := range cases {
		off, _, found, err := l.OffsetForTimestamp(c.ts)
		if err != nil || found != c.found || (found && off != c.off) {
			t.Errorf("timestamp %d: got %d %v %v, want %d %v", c.ts, off, found, err, c.off, c.found)
		}
	}
	ts, off, found, err := l.MaxTimestamp()
	if err != nil || !found || ts != 1_000_003 || off != 31 {
		t.Fatalf("max timestamp: %d at %d (%v, %v)", ts, off, found, err)
	}
}

func TestDeleteRecordsAndRetention(t *testing.T) {
	clock := &fakeClock{now: time.UnixMilli(1_000_000)}
	mem := vfs.NewMem()
	cfg := testConfig("t-0")
	l, _, err := Open(mem, "/d/t-0", cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 40; i++ {
		mustAppend(t, l, mkBatch(t, "v", i*2, 2, 300, 1000*i))
	}
	segs := l.SegmentCount()
	if segs < 5 {
		t.Fatalf("only %d segments", segs)
	}
	// DeleteRecords: forward only, not beyond the HW, durable.
	if _, err := l.DeleteRecords(81); !isOutOfRange(err) {
		t.Fatalf("delete records beyond HW: %v", err)
	}
	if s, err := l.DeleteRecords(11); err != nil || s != 11 {
		t.Fatalf("delete records to 11: %d %v", s, err)
	}
	if s, _ := l.DeleteRecords(5); s != 11 {
		t.Fatalf("delete records moved the log start back to %d", s)
	}
	if _, err := l.Read(10, 100, false); !isOutOfRange(err) {
		t.Fatalf("read below log start: %v", err)
	}
	got := readRecords(t, l, true)
	if _, ok := got[10]; ok || len(got) != 80-11 {
		t.Fatalf("after delete-records read %d records", len(got))
	}
	// Retention removes the segments wholly below the log start.
	res, err := l.EnforceRetention(clock.now.UnixMilli())
	if err != nil || res.DeletedSegments == 0 {
		t.Fatalf("retention below log start: %+v %v", res, err)
	}
	if l.Offsets().LogStart != 11 {
		t.Fatalf("log start %d after retention, want 11", l.Offsets().LogStart)
	}
	// The log start survives a reopen.
	l.Close()
	l, _ = openLog(t, mem, "/d/t-0", cfg, nil, true)
	if s := l.Offsets().LogStart; s != 11 {
		t.Fatalf("log start after reopen %d", s)
	}

	// By time: segments whose newest record is older than retention.ms go.
	cfg.RetentionMs = 20 * time.Second
	if err := l.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	clock.now = time.UnixMilli(30_000 + 20_000)
	prev := l.Offsets().LogStart
	res, err = l.EnforceRetention(clock.now.UnixMilli())
	if err != nil || res.DeletedSegments == 0 {
		t.Fatalf("retention by time: %+v %v", res, err)
	}
	start := l.Offsets().LogStart
	if start <= prev {
		t.Fatalf("log start %d did not advance from %d", start, prev)
	}
	// Every record left whose batch is entirely old must be gone; every
	// record newer than the horizon must remain.
	got = readRecords(t, l, true)
	for o := int64(0); o < 80; o++ {
		ts := 1000 * (o / 2)
		_, kept := got[o]
		if ts >= 30_000 && !kept {
			t.Fatalf("record at %d (ts %d) is within retention but gone", o, ts)
		}
	}
	// The active segment expires too: everything old goes, log stays usable.
	clock.now = time.UnixMilli(10_000_000)
	if _, err := l.EnforceRetention(clock.now.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if off := l.Offsets(); off.LogStart != 80 || off.LEO != 80 || l.SegmentCount() != 1 {
		t.Fatalf("after full expiry: %+v, %d segments", off, l.SegmentCount())
	}
	if _, err := l.Read(79, 100, false); !isOutOfRange(err) {
		t.Fatalf("read below log start after expiry: %v", err)
	}
	if r := mustAppend(t, l, mkBatch(t, "v", 80, 1, 10, clock.now.UnixMilli())); r.BaseOffset != 80 {
		t.Fatalf("append after expiry at %d", r.BaseOffset)
	}
	l.Close()
}

func TestRetentionBySize(t *testing.T) {
	cfg := testConfig("t-0")
	cfg.RetentionBytes = 10 << 10
	l, _ := openLog(t, vfs.NewMem(), "/d/t-0", cfg, nil, false)
	defer l.Close()
	var lastStart int64
	for i := int64(0); i < 200; i++ {
		mustAppend(t, l, mkBatch(t, "v", i, 1, 500, i))
		if i%10 == 0 {
			res, err := l.EnforceRetention(0)
			if err != nil {
				t.Fatal(err)
			}
			if res.LogStart < lastStart {
				t.Fatalf("log start moved back from %d to %d", lastStart, res.LogStart)
			}
			lastStart = res.LogStart
			if size := l.Size(); size-int64(cfg.SegmentBytes) > cfg.RetentionBytes {
				t.Fatalf("size %d exceeds retention %d by more than a segment", size, cfg.RetentionBytes)
			}
		}
	}
	if lastStart == 0 {
		t.Fatal("size retention never deleted anything")
	}
	got := readRecords(t, l, true)
	for o := lastStart; o < 200; o++ {
		checkValue(t, got, o, value("v", o, 500))
	}
}

func TestTruncateTo(t *testing.T) {
	mem := vfs.NewMem()
	l, _ := openLog(t, mem, "/d/t-0", testConfig("t-0"), nil, false)
	for i := int64(0); i < 50; i++ {
		mustAppend(t, l, mkBatch(t, "v", i*2, 2, 200, i))
	}
	// Truncating to an offset inside a batch removes that whole batch.
	leo, err := l.TruncateTo(41)
	if err != nil || leo != 40 {
		t.Fatalf("truncate to 41: leo %d, %v", leo, err)
	}
	if off := l.Offsets(); off.LEO != 40 || off.HW != 40 {
		t.Fatalf("after truncation: %+v", off)
	}
	got := readRecords(t, l, true)
	if len(got) != 40 {
		t.Fatalf("%d records after truncation", len(got))
	}
	// New appends continue at the truncation point, and survive reopen.
	mustAppend(t, l, mkBatch(t, "w", 40, 3, 200, 999))
	l.Close()
	l, _ = openLog(t, mem, "/d/t-0", testConfig("t-0"), nil, true)
	defer l.Close()
	got = readRecords(t, l, true)
	checkValue(t, got, 39, value("v", 39, 200))
	checkValue(t, got, 42, value("w", 42, 200))
	if l.Offsets().LEO != 43 {
		t.Fatalf("LEO %d", l.Offsets().LEO)
	}
}

func TestFinishInterruptedSwap(t *testing.T) {
	mem := vfs.NewMem()
	dir := "/d/t-0"
	l, _ := openLog(t, mem, dir, testConfig("t-0"), nil, false)
	for i := int64(0); i < 30; i++ {
		mustAppend(t, l, mkBatch(t, "v", i*2, 2, 300, i))
	}
	if l.SegmentCount() < 4 {
		t.Fatal("need several segments")
	}
	first, second := l.mu.segs[0].Base(), l.mu.segs[2].Base()
	l.Close()
	// A rewrite of the first two segments into one, holding only the odd
	// offsets, interrupted after the rename to .swap.
	var buf []byte
	for o := first + 1; o < second; o += 2 {
		b, _ := record.Build(record.BatchOptions{BaseOffset: o, ProducerID: -1}, []record.Simple{{Value: value("v", o, 300)}})
		buf = append(buf, b...)
	}
	f, _ := mem.Create(filepath.Join(dir, segment.Name(first, ".log.swap")))
	f.Write(buf)
	f.Sync()
	f.Close()
	stray, _ := mem.Create(filepath.Join(dir, segment.Name(first, ".log.cleaned")))
	stray.Close()
	mem.SyncDir(dir)

	l, _ = openLog(t, mem, dir, testConfig("t-0"), nil, true)
	defer l.Close()
	names, _ := mem.List(dir)
	for _, n := range names {
		if strings.HasSuffix(n, ".swap") || strings.HasSuffix(n, ".cleaned") {
			t.Fatalf("left over %s", n)
		}
	}
	got := readRecords(t, l, false)
	for o := first; o < 60; o++ {
		_, ok := got[o]
		want := o >= second || o%2 == 1
		if ok != want {
			t.Fatalf("offset %d present=%v, want %v", o, ok, want)
		}
	}
}

func TestRollByAge(t *testing.T) {
	cfg := testConfig("t-0")
	cfg.SegmentBytes = 1 << 20
	cfg.SegmentMs = time.Hour
	l, _ := openLog(t, vfs.NewMem(), "/d/t-0", cfg, nil, false)
	defer l.Close()
	hour := time.Hour.Milliseconds()
	mustAppend(t, l, mkBatch(t, "v", 0, 1, 10, 10*hour))
	mustAppend(t, l, mkBatch(t, "v", 1, 1, 10, 10*hour+hour/2))
	if l.SegmentCount() != 1 {
		t.Fatal("rolled before segment.ms")
	}
	mustAppend(t, l, mkBatch(t, "v", 2, 1, 10, 11*hour+1))
	if l.SegmentCount() != 2 || l.active().Base() != 2 {
		t.Fatalf("no roll once a batch is segment.ms newer than the first: %d segments", l.SegmentCount())
	}
}
