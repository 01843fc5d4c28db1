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
		c := New(Config{Mode: Group, MaxDelay: time.Second})
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
		c := New(Config{Mode: Group, MaxDelay: time.Second, MaxBatchBytes: 1000, MaxInflight: 2})
		defer c.Close()
		// An idle committer flushes at once.
		a := &target{}
		start := time.Now()
		w, _ := c.Add(a, 1)
		w.Wait(a)
		if el := time.Since(start); el != 0 {
			t.Fatalf("an idle committer waited %v before flushing", el)
		}
		// A slow flush: the next window waits for it, but no longer than
		// MaxDelay, then a second flush starts beside it.
		gate := make(chan struct{})
		slow := &target{gate: gate}
		c.Add(slow, 1)
		synctest.Wait()
		b := &target{}
		start = time.Now()
		w, _ = c.Add(b, 1)
		<-time.After(time.Second - time.Millisecond)
		synctest.Wait()
		if b.syncs.Load() != 0 {
			t.Fatal("the second window flushed before MaxDelay")
		}
		w.Wait(b)
		if el := time.Since(start); el != time.Second {
			t.Fatalf("second window flushed after %v, want MaxDelay", el)
		}
		// MaxBatchBytes waiting start a flush at once (still beside the slow one).
		d := &target{}
		start = time.Now()
		w, _ = c.Add(d, 1000)
		w.Wait(d)
		if el := time.Since(start); el != 0 {
			t.Fatalf("a full window waited %v", el)
		}
		// With MaxInflight flushes stuck, a window waits for one to end.
		gate2 := make(chan struct{})
		slow2 := &target{gate: gate2}
		c.Add(slow2, 1000)
		synctest.Wait()
		e := &target{}
		w, _ = c.Add(e, 1000)
		<-time.After(10 * time.Second)
		synctest.Wait()
		if e.syncs.Load() != 0 {
			t.Fatal("a third concurrent flush started past MaxInflight")
		}
		close(gate)
		w.Wait(e)
		close(gate2)
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

type observer struct {
	flushes, syncs, failed atomic.Int32
	bytes                  atomic.Int64
}

func (o *observer) ObserveFlush(bytes int64, targets int, d time.Duration) {
	o.flushes.Add(1)
	o.bytes.Add(bytes)
}

func (o *observer) ObserveSync(d time.Duration, err error) {
	o.syncs.Add(1)
	if err != nil {
		o.failed.Add(1)
	}
}

// TestStalledAndObserved: a flush stuck in its sync is reported as a
// stall once it has run longer than the limit, and no longer once it
// completes; the observer hears of every flush and sync.
func TestStalledAndObserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := &observer{}
		c := New(Config{Mode: Group, MaxDelay: time.Millisecond, Observer: obs})
		defer c.Close()
		gate := make(chan struct{})
		a := &target{name: "a", gate: gate}
		bad := &target{name: "bad", err: errors.New("EIO")}
		w, _ := c.Add(a, 100)
		synctest.Wait()
		if err := c.Stalled(time.Second); err != nil {
			t.Fatalf("stalled at once: %v", err)
		}
		time.Sleep(2 * time.Second) // the fake clock of the bubble
		if err := c.Stalled(time.Second); err == nil {
			t.Fatal("a flush stuck for 2s is not a stall at a 1s limit")
		}
		close(gate)
		if err := w.Wait(a); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := c.Stalled(time.Second); err != nil {
			t.Fatalf("still stalled after the flush finished: %v", err)
		}
		a.gate = nil
		w, _ = c.Add(bad, 50)
		if w.Wait(bad) == nil {
			t.Fatal("the failing sync succeeded")
		}
		synctest.Wait()
		if obs.flushes.Load() != 2 || obs.syncs.Load() != 2 || obs.failed.Load() != 1 || obs.bytes.Load() != 150 {
			t.Fatalf("observed flushes %d syncs %d failed %d bytes %d", obs.flushes.Load(), obs.syncs.Load(), obs.failed.Load(), obs.bytes.Load())
		}
	})
}

// fsTarget is a target on filesystem fs, whose shared syncs are counted
// on the filesystem and fail with its err.
type fsTarget struct {
	target
	fs       *fakeFS
	finished atomic.Int32
}

type fakeFS struct {
	id    uint64
	syncs atomic.Int32
	err   error
}

func (t *fsTarget) BeginFlush() (uint64, func() error, func(error) error, bool) {
	if t.fs == nil {
		return 0, nil, nil, false
	}
	return t.fs.id, func() error { t.fs.syncs.Add(1); return t.fs.err }, func(err error) error {
		t.finished.Add(1)
		return err
	}, true
}

// TestManyTargetsShareTheirFilesystemSync: a flush of at least SyncFSMin
// targets syncs each filesystem once for all its targets (each target
// finished with that sync's result), flushes alone the targets that
// cannot share, and a smaller flush syncs every target alone.
func TestManyTargetsShareTheirFilesystemSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Mode: Group, MaxDelay: time.Millisecond, SyncFSMin: 4})
		defer c.Close()
		a, b := &fakeFS{id: 1}, &fakeFS{id: 2, err: errors.New("eio on b")}
		var ts []*fsTarget
		for i := range 6 {
			fs := a
			if i >= 4 {
				fs = b
			}
			ts = append(ts, &fsTarget{fs: fs})
		}
		loner := &fsTarget{} // no filesystem sync: flushes alone
		gate := make(chan struct{})
		blocker := &target{gate: gate}
		c.Add(blocker, 1)
		synctest.Wait() // the next window gathers while this one runs
		var w *Window
		for _, tt := range ts {
			w, _ = c.Add(tt, 1)
		}
		c.Add(loner, 1)
		close(gate)
		<-w.Done()
		if a.syncs.Load() != 1 || b.syncs.Load() != 1 {
			t.Fatalf("filesystem syncs: a %d, b %d; want one each", a.syncs.Load(), b.syncs.Load())
		}
		for i, tt := range ts {
			if tt.finished.Load() != 1 || tt.syncs.Load() != 0 {
				t.Fatalf("target %d: finished %d times, flushed alone %d times", i, tt.finished.Load(), tt.syncs.Load())
			}
			err := w.Err(tt)
			if (i >= 4) != (err != nil) {
				t.Fatalf("target %d on filesystem %d: err %v", i, tt.fs.id, err)
			}
		}
		if loner.syncs.Load() != 1 || w.Err(loner) != nil {
			t.Fatalf("the target without a filesystem sync: %d flushes, err %v", loner.syncs.Load(), w.Err(loner))
		}
		// Three targets: below SyncFSMin, each flushes alone.
		small := []*fsTarget{{fs: a}, {fs: a}, {fs: a}}
		gate = make(chan struct{})
		blocker.gate = gate
		c.Add(blocker, 1)
		synctest.Wait()
		for _, tt := range small {
			w, _ = c.Add(tt, 1)
		}
		close(gate)
		<-w.Done()
		for i, tt := range small {
			if tt.syncs.Load() != 1 || tt.finished.Load() != 0 {
				t.Fatalf("small flush, target %d: %d flushes alone, %d shared", i, tt.syncs.Load(), tt.finished.Load())
			}
		}
		if a.syncs.Load() != 1 {
			t.Fatalf("a small flush synced the filesystem (%d syncs)", a.syncs.Load())
		}
	})
}
