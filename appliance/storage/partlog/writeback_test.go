package partlog

import (
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// TestAppendsStartTheirWriteback checks the log starts the disk writing
// its appends, every WritebackBytes, where a flush will sync them, and
// leaves it to the kernel in os mode.
func TestAppendsStartTheirWriteback(t *testing.T) {
	for _, mode := range []flush.Mode{flush.Group, flush.Interval, flush.OS} {
		t.Run(mode.String(), func(t *testing.T) {
			fsys := vfs.NewFaulty(vfs.OS)
			var mu sync.Mutex
			var started []int
			fsys.SetInjector(func(op vfs.Op) error {
				if op.Kind == vfs.OpWriteback {
					mu.Lock()
					started = append(started, op.Len)
					mu.Unlock()
				}
				return nil
			})
			c := flush.New(flush.Config{Mode: mode, MaxDelay: time.Millisecond})
			defer c.Close()
			cfg := DefaultConfig("t-0")
			cfg.WritebackBytes = 64 << 10
			l, _ := openLog(t, fsys, t.TempDir(), cfg, c, false)
			defer l.Close()
			for i := int64(0); i < 4; i++ { // about 100 KB each
				mustAppend(t, l, mkBatch(t, "v", i*100, 100, 1000, i))
			}
			mu.Lock()
			defer mu.Unlock()
			if mode == flush.OS {
				if len(started) != 0 {
					t.Fatalf("writebacks %v in os mode", started)
				}
				return
			}
			if len(started) != 4 {
				t.Fatalf("writebacks %v for four appends of 100 KB with a 64 KiB threshold; want four", started)
			}
			for _, n := range started {
				if n < 64<<10 {
					t.Fatalf("writebacks %v: one below the threshold", started)
				}
			}
		})
	}
}
