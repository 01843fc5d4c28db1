package flush

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

type target struct {
	name  string
	syncs atomic.Int32
	gate  chan struct{} // when set, Flush waits on it
	err   error
}

func (t *target) Flush() error {
	if t.gate != nil {
		<-t.gate
	}
	t.syncs.Add(1)
	return t.err
}

func TestWindowsCoalesceWhileAFlushRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Mode: Group, MaxDelay: time.Microsecond})
		defer c.Close()
		gate := make(chan struct{})
		a := &target{name: "a", gate: gate}
		b, d := &target{name: "b"}, &target{name: "d"}
		w1, _ := c.Add(a, 10)
		synctest.Wait() // the first flush is running, stuck in a.Flush
		a.gate = nil
		w2, _ := c.Add(a, 10)
		w2b, _ := c.Add(b, 10)
		w2d, _ := c.Add(d, 10)
		if w2 == w1 || w2b != w2 || w2d != w2 {
			t.Fatal("appends during a flush must share the next window")
		}
		select {
		case <-w1.Done():
			t.Fatal("window 1 finished before its sync")
		default:
		}
		close(gate)
		for _, w := range []*Window{w1, w2} {
			if err := w.Wait(a); err != nil {
				t.Fatal(err)
			}
		}
		if a.syncs.Load() != 2 || b.syncs.Load() != 1 || d.syncs.Load() != 1 {
			t.Fatalf("syncs a=%d b=%d d=%d; want one per target per window", a.syncs.Load(), b.syncs.Load(), d.syncs.Load())
		}
		if st := c.Stats(); st.Flushes != 2 || st.Syncs != 4 || st.Bytes != 40 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestMaxDelayAndMaxBatchBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Mode: Group, MaxDelay: time.Second, MaxBatchBytes: 1000})
		defer c.Close()
		a := &target{}
		start := time.Now()
		w, _ := c.Add(a, 1)
		w.Wait(a)
		if time.Since(start) != 0 {
			t.Fatalf("an idle committer waited %v before flushing", time.Since(start))
		}
		// The next small write waits for the window: one flush per MaxDelay.
		w, _ = c.Add(a, 1)
		w.Wait(a)
		if el := time.Since(start); el != time.Second {
			t.Fatalf("second flush after %v, want exactly MaxDelay", el)
		}
		// Enough bytes flush at once.
		mid := time.Now()
		w, _ = c.Add(a, 1000)
		w.Wait(a)
		if el := time.Since(mid); el != 0 {
			t.Fatalf("a full batch waited %v", el)
		}
	})
}

func TestFlushErrorsArePerTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Mode: Group, MaxDelay: time.Millisecond})
		defer c.Close()
		bad := &target{err: errors.New("eio")}
		good := &target{}
		gate := make(chan struct{})
		blocker := &target{gate: gate}
		c.Add(blocker, 1)
		synctest.Wait()
		w, _ := c.Add(bad, 1)
		c.Add(good, 1)
		close(gate)
		if err := w.Wait(bad); err == nil {
			t.Fatal("the failing target got no error")
		}
		if err := w.Wait(good); err != nil {
			t.Fatalf("a healthy target in the same window got %v", err)
		}
		if st := c.Stats(); st.SyncErrors != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestCloseFlushesPendingAndRefusesNew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Mode: Interval, MaxDelay: time.Hour})
		a := &target{}
		c.Add(a, 1)
		c.Close()
		if a.syncs.Load() != 1 {
			t.Fatalf("close left a pending target unsynced (%d syncs)", a.syncs.Load())
		}
		if _, err := c.Add(a, 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("add after close: %v", err)
		}
	})
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Group, Interval, OS} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Fatalf("round trip of %v: %v %v", m, got, err)
		}
	}
	if _, err := ParseMode("fsync"); err == nil {
		t.Fatal("unknown mode accepted")
	}
}
