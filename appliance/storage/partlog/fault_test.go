package partlog

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

func TestENOSPC(t *testing.T) {
	mem := vfs.NewMem()
	c := flush.New(flush.Config{Mode: flush.Group, MaxDelay: time.Microsecond})
	defer c.Close()
	l, _ := openLog(t, mem, "/d/t-0", testConfig("t-0"), c, false)
	var n int64
	for ; n < 10; n++ {
		mustAppend(t, l, mkBatch(t, "v", n, 1, 200, n))
	}
	// The disk fills up part way through the next batch.
	mem.SetCapacity(mem.Used() + 100)
	_, err := l.Append(mkBatch(t, "v", n, 1, 200, n), 0)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "t-0") {
		t.Fatalf("append on a full disk: %v; want ENOSPC naming the partition", err)
	}
	if off := l.Offsets(); off.LEO != 10 || off.HW != 10 {
		t.Fatalf("a failed append moved the offsets: %+v", off)
	}
	got := readRecords(t, l, true)
	for i := int64(0); i < 10; i++ {
		checkValue(t, got, i, value("v", i, 200))
	}
	// Space returns: appends go on at the same offset, even before a reopen.
	mem.SetCapacity(0)
	if res := mustAppend(t, l, mkBatch(t, "v", 10, 1, 200, 10)); res.BaseOffset != 10 {
		t.Fatalf("append after space returned landed at %d", res.BaseOffset)
	}
	l.Close()
	l, _ = openLog(t, mem, "/d/t-0", testConfig("t-0"), c, false)
	defer l.Close()
	got = readRecords(t, l, true)
	for i := int64(0); i <= 10; i++ {
		checkValue(t, got, i, value("v", i, 200))
	}
	mustAppend(t, l, mkBatch(t, "v", 11, 1, 200, 11))
}

func TestEIOOnWrite(t *testing.T) {
	mem := vfs.NewMem()
	l, _ := openLog(t, mem, "/d/t-0", testConfig("t-0"), nil, false)
	defer l.Close()
	mustAppend(t, l, mkBatch(t, "v", 0, 1, 50, 0))
	mem.SetInjector(func(op vfs.Op) error {
		if op.Kind == vfs.OpWrite && strings.HasSuffix(op.Path, ".log") {
			return syscall.EIO
		}
		return nil
	})
	if _, err := l.Append(mkBatch(t, "v", 1, 1, 50, 1), 0); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "t-0") {
		t.Fatalf("append with EIO on write: %v", err)
	}
	mem.SetInjector(nil)
	if res := mustAppend(t, l, mkBatch(t, "v", 1, 1, 50, 1)); res.BaseOffset != 1 {
		t.Fatalf("append after the write error landed at %d", res.BaseOffset)
	}
}

func TestEIOOnFsyncPoisonsTheLog(t *testing.T) {
	mem := vfs.NewMem()
	c := flush.New(flush.Config{Mode: flush.Group, MaxDelay: time.Microsecond})
	defer c.Close()
	l, _ := openLog(t, mem, "/d/t-0", testConfig("t-0"), c, false)
	for i := int64(0); i < 5; i++ {
		mustAppend(t, l, mkBatch(t, "v", i, 1, 100, i))
	}
	failSync := true
	mem.SetInjector(func(op vfs.Op) error {
		if failSync && op.Kind == vfs.OpSync && strings.HasSuffix(op.Path, ".log") {
			return syscall.EIO
		}
		return nil
	})
	_, err := l.Append(mkBatch(t, "v", 5, 1, 100, 5), 0)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "t-0") {
		t.Fatalf("append with EIO on fsync: %v", err)
	}
	if off := l.Offsets(); off.HW != 5 {
		t.Fatalf("the HW moved over unsynced data: %+v", off)
	}
	// The disk recovers, but the log must not carry on: the kernel may have
	// dropped the pages a later fsync would claim to have synced.
	failSync = false
	_, err = l.Append(mkBatch(t, "v", 5, 1, 100, 5), 0)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "reopen") {
		t.Fatalf("append after a failed fsync: %v; want the log to refuse", err)
	}
	// Reads of durable data keep working.
	got := readRecords(t, l, true)
	for i := int64(0); i < 5; i++ {
		checkValue(t, got, i, value("v", i, 100))
	}
	if err := l.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("close of a failed log: %v", err)
	}
	// After a reopen (recovery) appends succeed and nothing durable is lost.
	l, _ = openLog(t, mem, "/d/t-0", testConfig("t-0"), c, false)
	defer l.Close()
	got = readRecords(t, l, true)
	for i := int64(0); i < 5; i++ {
		checkValue(t, got, i, value("v", i, 100))
	}
	leo := l.Offsets().LEO
	if res := mustAppend(t, l, mkBatch(t, "v", leo, 1, 100, 6)); res.BaseOffset != leo {
		t.Fatalf("append after reopen at %d, want %d", res.BaseOffset, leo)
	}
}

func TestIntervalAndOSModes(t *testing.T) {
	for _, mode := range []flush.Mode{flush.Interval, flush.OS} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := vfs.NewMem()
				c := flush.New(flush.Config{Mode: mode, MaxDelay: 50 * time.Millisecond})
				defer c.Close()
				l, _ := openLog(t, mem, "/d/t-0", testConfig("t-0"), c, false)
				defer l.Close()
				mustAppend(t, l, mkBatch(t, "v", 0, 3, 10, 0))
				// Acks do not wait: the HW moves at once.
				if off := l.Offsets(); off.HW != 3 {
					t.Fatalf("HW %d after an %s-mode append", off.HW, mode)
				}
				<-time.After(time.Second) // virtual time: twenty flush intervals
				synctest.Wait()
				durable := l.Offsets().Durable
				if mode == flush.Interval && (durable != 3 || c.Stats().Syncs == 0) {
					t.Fatalf("interval mode did not flush in the background: durable %d, %+v", durable, c.Stats())
				}
				if mode == flush.OS && c.Stats().Syncs != 0 {
					t.Fatalf("os mode synced: %+v", c.Stats())
				}
			})
		})
	}
}
