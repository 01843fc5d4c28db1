// Package flush is the node-wide group commit of Eddy's storage engine.
//
// Appends from every partition of a node are made durable together: an
// append writes its bytes, marks its partition dirty with Add, and (in group
// mode) waits for the window that covers it. A flush syncs every partition
// that was dirty when it started, in parallel, then releases that window's
// waiters with each partition's result. When a flush covers many
// partitions (SyncFSMin), those on one filesystem share a single syncfs
// instead of an fdatasync each.
//
// When to flush: at once when no flush is running (an idle node adds no
// delay), otherwise when the running flush ends, so writes arriving during a
// sync share the next one. Two bounds keep a busy node from letting a window
// grow without limit behind a slow sync: once the window's oldest write has
// waited max_delay, or max_batch_bytes are waiting, another flush starts
// beside the running one (up to max_inflight). A write therefore waits at
// most max_delay for its flush to begin.
//
// Modes: group (acks wait for the flush), interval (acks do not wait; dirty
// partitions are flushed every max_delay) and os (no flushes; the page cache
// decides, as Kafka does by default).
package flush

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is a flush policy.
type Mode int

// The flush modes.
const (
	Group Mode = iota
	Interval
	OS
)

func (m Mode) String() string {
	switch m {
	case Group:
		return "group"
	case Interval:
		return "interval"
	case OS:
		return "os"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "group", "interval" or "os".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "group":
		return Group, nil
	case "interval":
		return Interval, nil
	case "os":
		return OS, nil
	}
	return 0, fmt.Errorf("unknown flush mode %q (want group, interval or os)", s)
}

// Config configures a Committer.
type Config struct {
	Mode            Mode
	MaxDelay        time.Duration // longest wait for a flush to start; default 2ms
	MaxBatchBytes   int64         // bytes that start a flush beside a running one; default 1 MiB
	MaxInflight     int           // concurrent flushes; default 2
	SyncConcurrency int           // parallel syncs per flush; default 8
	// SyncFSMin is the number of targets in one flush from which those
	// that can (FSTarget) share one sync of their filesystem instead of
	// one fdatasync each; 0 never shares.
	SyncFSMin int
	// Observer, if set, hears of every flush and every target sync.
	Observer Observer
}

// Observer hears what the committer does (metrics).
type Observer interface {
	ObserveFlush(bytes int64, targets int, d time.Duration)
	ObserveSync(d time.Duration, err error)
}

// Target is what a flush syncs: a partition log. Flush makes everything
// appended before the call durable.
type Target interface {
	Flush() error
}

// FSTarget is a Target that can share one sync of its whole filesystem
// with the other targets on it: with many partitions dirty, one syncfs
// costs far less than an fdatasync per file. BeginFlush captures what a
// flush starting now covers and returns the filesystem's ID, its sync, and
// finish, which takes the sync's result and returns the target's (as
// Flush would); ok false means the target flushes alone with Flush.
type FSTarget interface {
	Target
	BeginFlush() (fs uint64, sync func() error, finish func(error) error, ok bool)
}

// Window is one flush: the set of targets dirty when it started.
type Window struct {
	done    chan struct{}
	errs    map[Target]error
	failAll error
}

// Done is closed when the window's flush has finished.
func (w *Window) Done() <-chan struct{} { return w.done }

// Err returns t's flush result; call it after Done is closed.
func (w *Window) Err(t Target) error {
	if w.failAll != nil {
		return w.failAll
	}
	return w.errs[t]
}

// Wait blocks until the window is flushed and returns t's result.
func (w *Window) Wait(t Target) error {
	<-w.done
	return w.Err(t)
}

// ErrClosed is returned for appends added after Close.
var ErrClosed = errors.New("flush: committer closed")

// Stats counts the committer's work.
type Stats struct {
	Flushes    uint64 // windows flushed
	Syncs      uint64 // target syncs
	SyncErrors uint64
	Bytes      uint64 // bytes covered by flushes
}

// Committer runs group commit for a node.
type Committer struct {
	cfg     Config                 // as created; Mode never changes
	tune    atomic.Pointer[Config] // the live bounds (Reconfigure)
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	abandon atomic.Bool // stop without the final flush

	mu struct {
		sync.Mutex
		pending map[Target]struct{}
		bytes   int64
		oldest  time.Time // when the first pending write arrived
		window  *Window
		closed  bool
		running map[*Window]time.Time // flushes in progress, by start
	}
	flushes, syncs, syncErrors, flushedBytes atomic.Uint64
	lastSync                                 atomic.Int64 // duration of the last flush, ns
}

// New starts a committer. Close stops it.
func New(cfg Config) *Committer {
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 2 * time.Millisecond
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 1 << 20
	}
	if cfg.SyncConcurrency <= 0 {
		cfg.SyncConcurrency = 8
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 2
	}
	cfg.MaxInflight = min(cfg.MaxInflight, 64)
	c := &Committer{cfg: cfg, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	c.tune.Store(&cfg)
	c.mu.pending = map[Target]struct{}{}
	c.mu.running = map[*Window]time.Time{}
	c.mu.window = newWindow()
	if cfg.Mode == OS {
		close(c.done)
		return c
	}
	go c.run()
	return c
}

func newWindow() *Window { return &Window{done: make(chan struct{}), errs: map[Target]error{}} }

// fail completes a window with err for every target.
func (w *Window) fail(err error) {
	w.failAll = err
	close(w.done)
}

// Reconfigure changes the bounds of a running committer: MaxDelay,
// MaxBatchBytes, MaxInflight (at most 64), SyncConcurrency and SyncFSMin. The mode
// cannot change while appends are in flight; a different mode is an error.
func (c *Committer) Reconfigure(cfg Config) error {
	if cfg.Mode != c.cfg.Mode {
		return fmt.Errorf("flush mode %s cannot change to %s without a restart", c.cfg.Mode, cfg.Mode)
	}
	if cfg.MaxDelay <= 0 || cfg.MaxBatchBytes <= 0 || cfg.MaxInflight <= 0 || cfg.MaxInflight > 64 || cfg.SyncConcurrency <= 0 || cfg.SyncFSMin < 0 {
		return fmt.Errorf("flush bounds out of range: %+v", cfg)
	}
	c.tune.Store(&cfg)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// Mode returns the committer's mode.
func (c *Committer) Mode() Mode { return c.cfg.Mode }

// Add marks t dirty after n bytes were written to it and returns the window
// whose flush will cover them. In os mode it returns nil: nothing will.
func (c *Committer) Add(t Target, n int) (*Window, error) {
	if c.cfg.Mode == OS {
		return nil, nil
	}
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if len(c.mu.pending) == 0 {
		c.mu.oldest = time.Now()
	}
	c.mu.pending[t] = struct{}{}
	c.mu.bytes += int64(n)
	w := c.mu.window
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return w, nil
}

// Stats returns counters of the work done so far.
func (c *Committer) Stats() Stats {
	return Stats{Flushes: c.flushes.Load(), Syncs: c.syncs.Load(), SyncErrors: c.syncErrors.Load(), Bytes: c.flushedBytes.Load()}
}

// LastFlushDuration returns how long the most recent flush took.
func (c *Committer) LastFlushDuration() time.Duration { return time.Duration(c.lastSync.Load()) }

// Stalled reports whether the committer has stopped making progress: a
// flush running for longer than limit, or writes waiting longer than
// limit (beyond max_delay) for a flush to start. It is what a watchdog
// asks; nil means progress.
func (c *Committer) Stalled(limit time.Duration) error {
	if c.cfg.Mode == OS {
		return nil
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, start := range c.mu.running {
		if d := now.Sub(start); d > limit {
			return fmt.Errorf("a flush has been running for %s", d.Round(time.Millisecond))
		}
	}
	if len(c.mu.pending) > 0 {
		if d := now.Sub(c.mu.oldest) - c.tune.Load().MaxDelay; d > limit {
			return fmt.Errorf("writes have waited %s for a flush", d.Round(time.Millisecond))
		}
	}
	return nil
}

// Abandon stops the committer without flushing what is pending (a
// simulated crash); waiting appends get ErrClosed.
func (c *Committer) Abandon() {
	c.abandon.Store(true)
	c.Close()
}

// Close flushes what is pending and stops the committer.
func (c *Committer) Close() {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.mu.closed = true
	c.mu.Unlock()
	if c.cfg.Mode != OS {
		close(c.stop)
	}
	<-c.done
}

func (c *Committer) run() {
	defer close(c.done)
	finished := make(chan struct{}, 64) // more than any MaxInflight
	inflight := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	start := func() {
		inflight++
		w, targets, bytes := c.swap()
		t0 := time.Now()
		c.mu.Lock()
		c.mu.running[w] = t0
		c.mu.Unlock()
		go func() {
			c.flush(w, targets, bytes)
			d := time.Since(t0)
			c.lastSync.Store(int64(d))
			c.mu.Lock()
			delete(c.mu.running, w)
			c.mu.Unlock()
			if o := c.cfg.Observer; o != nil && len(targets) > 0 {
				o.ObserveFlush(bytes, len(targets), d)
			}
			finished <- struct{}{}
		}()
	}
	for {
		c.mu.Lock()
		n, bytes, oldest := len(c.mu.pending), c.mu.bytes, c.mu.oldest
		c.mu.Unlock()
		tune := c.tune.Load()
		var timeout <-chan time.Time
		if n > 0 && inflight < tune.MaxInflight {
			switch wait := tune.MaxDelay - time.Since(oldest); {
			case c.cfg.Mode == Interval:
				// Background flushing: every MaxDelay, one at a time.
				if inflight == 0 && wait <= 0 {
					start()
					continue
				}
				if inflight == 0 {
					timer.Reset(wait)
					timeout = timer.C
				}
			case inflight == 0, wait <= 0, bytes >= tune.MaxBatchBytes:
				start()
				continue
			default:
				timer.Reset(wait)
				timeout = timer.C
			}
		}
		select {
		case <-c.kick:
		case <-finished:
			inflight--
		case <-timeout:
		case <-c.stop:
			for ; inflight > 0; inflight-- {
				<-finished
			}
			if c.abandon.Load() {
				w, _, _ := c.swap()
				w.fail(ErrClosed)
				return
			}
			c.flush(c.swap()) // anything added before Close
			return
		}
		if timeout != nil {
			timer.Stop()
		}
	}
}

// swap closes the gathering window and opens the next.
func (c *Committer) swap() (*Window, map[Target]struct{}, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, targets, bytes := c.mu.window, c.mu.pending, c.mu.bytes
	c.mu.window, c.mu.pending, c.mu.bytes = newWindow(), map[Target]struct{}{}, 0
	return w, targets, bytes
}

// flush syncs a window's targets and completes it.
func (c *Committer) flush(w *Window, targets map[Target]struct{}, bytes int64) {
	if len(targets) == 0 {
		close(w.done)
		return
	}
	tune := c.tune.Load()
	alone := make([]Target, 0, len(targets))
	var shared map[uint64]*fsGroup
	share := tune.SyncFSMin > 0 && len(targets) >= tune.SyncFSMin
	for t := range targets {
		if ft, ok := t.(FSTarget); ok && share {
			if id, sync, finish, ok := ft.BeginFlush(); ok {
				if shared == nil {
					shared = map[uint64]*fsGroup{}
				}
				g := shared[id]
				if g == nil {
					g = &fsGroup{sync: sync}
					shared[id] = g
				}
				g.members = append(g.members, fsMember{t, finish})
				continue
			}
		}
		alone = append(alone, t)
	}
	if len(alone) == 1 && len(shared) == 0 {
		w.errs[alone[0]] = c.syncOne(alone[0])
	} else {
		var mu sync.Mutex
		record := func(t Target, err error) {
			if err != nil {
				mu.Lock()
				w.errs[t] = err
				mu.Unlock()
			}
		}
		sem := make(chan struct{}, tune.SyncConcurrency)
		var wg sync.WaitGroup
		for _, g := range shared {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.syncFS(g.sync)
				<-sem
				for _, m := range g.members {
					record(m.t, m.finish(err))
				}
			}()
		}
		for _, t := range alone {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.syncOne(t)
				<-sem
				record(t, err)
			}()
		}
		wg.Wait()
	}
	c.flushes.Add(1)
	c.flushedBytes.Add(uint64(bytes))
	close(w.done)
}

// fsGroup is the targets of one flush that share their filesystem's sync.
type fsGroup struct {
	sync    func() error
	members []fsMember
}

type fsMember struct {
	t      Target
	finish func(error) error
}

// syncOne flushes one target alone.
func (c *Committer) syncOne(t Target) error { return c.syncFS(t.Flush) }

// syncFS runs one sync (a target's flush or a shared filesystem sync),
// counted and observed as one.
func (c *Committer) syncFS(sync func() error) error {
	c.syncs.Add(1)
	t0 := time.Now()
	err := sync()
	if err != nil {
		c.syncErrors.Add(1)
	}
	if o := c.cfg.Observer; o != nil {
		o.ObserveSync(time.Since(t0), err)
	}
	return err
}
