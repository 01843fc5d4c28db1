package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// TestManyPartitionsShareOneFilesystemSync, on real files: a flush of at
// least SyncFSMin partitions makes them all durable with one syncfs of
// their filesystem, counted as one sync; when that sync fails, every
// partition of the flush gets the error and refuses further appends.
func TestManyPartitionsShareOneFilesystemSync(t *testing.T) {
	fsys := vfs.NewFaulty(vfs.OS)
	// A long MaxDelay: while the first flush is held, the next one waits
	// for it rather than starting on a timer halfway through the appends,
	// so the gathered partitions always share one flush.
	st, err := Open(fsys, Config{Dir: t.TempDir(), Flush: flush.Config{Mode: flush.Group, MaxDelay: 10 * time.Second, SyncFSMin: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 24
	logs := make([]*partlog.Log, n)
	for i := range logs {
		if logs[i], err = st.CreateLog(TopicPartition{"many", int32(i)}, partlog.DefaultConfig("")); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := record.Build(record.BatchOptions{ProducerID: -1}, []record.Simple{{Value: []byte("durable")}})
	if err != nil {
		t.Fatal(err)
	}
	// round holds the first partition's flush at its sync, appends to the
	// others meanwhile (they gather in the next window), then lets it go,
	// and returns every partition's result. fail, when set, fails every
	// sync but the held one.
	round := func(fail error) []error {
		gate, reached := make(chan struct{}), make(chan struct{})
		var held, failing atomic.Bool
		first := "many-0" + string(filepath.Separator)
		fsys.SetInjector(func(op vfs.Op) error {
			if op.Kind != vfs.OpSync {
				return nil
			}
			if strings.Contains(op.Path, first) && held.CompareAndSwap(false, true) {
				close(reached)
				<-gate
				return nil
			}
			if failing.Load() {
				return fail
			}
			return nil
		})
		defer fsys.SetInjector(nil)
		failing.Store(fail != nil)
		waits := make([]func() error, n)
		errs := make([]error, n)
		for i, l := range logs {
			if _, waits[i], errs[i] = l.AppendAsync(batch, 0); errs[i] != nil {
				t.Fatalf("append to partition %d: %v", i, errs[i])
			}
			if i == 0 {
				select {
				case <-reached:
				case <-time.After(10 * time.Second):
					t.Fatal("the first flush never reached its sync")
				}
			}
		}
		close(gate)
		for i, w := range waits {
			errs[i] = w()
		}
		return errs
	}

	before := st.Committer().Stats().Syncs
	for i, err := range round(nil) {
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
		if off := logs[i].Offsets(); off.HW != 1 {
			t.Fatalf("partition %d: high watermark %d after a durable append, want 1", i, off.HW)
		}
	}
	// Where the kernel's syncfs cannot stand for fdatasync (before Linux
	// 5.8), every partition syncs alone.
	want := uint64(2)
	if f, err := vfs.OS.Create(filepath.Join(t.TempDir(), "probe")); err != nil {
		t.Fatal(err)
	} else {
		if _, err := f.(vfs.FSSyncer).FSID(); errors.Is(err, vfs.ErrNoSyncFS) {
			want = n
		}
		f.Close()
	}
	if syncs := st.Committer().Stats().Syncs - before; syncs != want {
		t.Fatalf("%d syncs for one held partition and %d gathered ones, want %d", syncs, n-1, want)
	}

	eio := fmt.Errorf("injected: %w", syscall.EIO)
	errs := round(eio)
	for i := 1; i < n; i++ {
		if !errors.Is(errs[i], syscall.EIO) {
			t.Fatalf("partition %d after a failed filesystem sync: %v, want EIO", i, errs[i])
		}
		if _, err := logs[i].Append(batch, 0); !errors.Is(err, partlog.ErrFailed) {
			t.Fatalf("partition %d appends after a failed sync: %v", i, err)
		}
		if off := logs[i].Offsets(); off.HW != 1 {
			t.Fatalf("partition %d: high watermark %d moved past what was durable", i, off.HW)
		}
	}
	if errs[0] != nil {
		t.Fatalf("the partition synced alone before the fault: %v", errs[0])
	}
}
