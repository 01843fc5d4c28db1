// Package flush is the node-wide group commit of Eddy's storage engine.
//
// Appends from every partition of a node are made durable together: an
// append writes its bytes, marks its partition dirty with Add, and (in group
// mode) waits for the window that covers it. The committer runs one flush at
// a time; a flush syncs every partition that was dirty when it started, in
// parallel, then releases that window's waiters with each partition's result.
//
// A flush starts when something is pending and either max_batch_bytes are
// waiting or max_delay has passed since the previous flush started. An idle
// node therefore flushes a lone write at once, and a busy one syncs at most
// once per max_delay unless enough bytes pile up to justify another sync.
// While a flush runs, the next window fills.
//
// Modes: group (acks wait for the flush), interval (acks do not wait; the
// committer still flushes every max_delay) and os (no flushes; the page
// cache decides, as Kafka does by default).
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
	MaxDelay        time.Duration // default 2ms
	MaxBatchBytes   int64         // default 1 MiB
	SyncConcurrency int           // parallel syncs per flush; default 8
}

// Target is what a flush syncs: a partition log. Flush makes everything
// appended before the call durable.
type Target interface {
	Flush() error
}

// Window is one flush: the set of targets dirty when it started.
type Window struct {
	done chan struct{}
	errs map[Target]error
}

// Done is closed when the window's flush has finished.
func (w *Window) Done() <-chan struct{} { return w.done }

// Err returns t's flush result; call it after Done is closed.
func (w *Window) Err(t Target) error { return w.errs[t] }

// Wait blocks until the window is flushed and returns t's result.
func (w *Window) Wait(t Target) error {
	<-w.done
	return w.errs[t]
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
	cfg  Config
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	mu struct {
		sync.Mutex
		pending map[Target]struct{}
		bytes   int64
		window  *Window
		closed  bool
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
	c := &Committer{cfg: cfg, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	c.mu.pending = map[Target]struct{}{}
	c.mu.window = newWindow()
	if cfg.Mode == OS {
		close(c.done)
		return c
	}
	go c.run()
	return c
}

func newWindow() *Window { return &Window{done: make(chan struct{}), errs: map[Target]error{}} }

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
	var lastStart time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		// Wait until something is pending.
		c.mu.Lock()
		empty := len(c.mu.pending) == 0
		c.mu.Unlock()
		if empty {
			select {
			case <-c.kick:
				continue
			case <-c.stop:
				c.flush() // anything added before Close
				return
			}
		}
		// Respect the window: at most one flush per MaxDelay unless
		// MaxBatchBytes are waiting (interval mode waits the full delay).
		for {
			c.mu.Lock()
			bytes := c.mu.bytes
			c.mu.Unlock()
			wait := c.cfg.MaxDelay - time.Since(lastStart)
			if wait <= 0 || (c.cfg.Mode == Group && bytes >= c.cfg.MaxBatchBytes) {
				break
			}
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.kick:
				timer.Stop()
			case <-c.stop:
				timer.Stop()
				c.flush()
				return
			}
		}
		lastStart = time.Now()
		c.flush()
		c.lastSync.Store(int64(time.Since(lastStart)))
	}
}

// flush syncs every pending target and completes the current window.
func (c *Committer) flush() {
	c.mu.Lock()
	w, targets, bytes := c.mu.window, c.mu.pending, c.mu.bytes
	c.mu.window, c.mu.pending, c.mu.bytes = newWindow(), map[Target]struct{}{}, 0
	c.mu.Unlock()
	if len(targets) == 0 {
		close(w.done)
		return
	}
	var mu sync.Mutex
	sem := make(chan struct{}, c.cfg.SyncConcurrency)
	var wg sync.WaitGroup
	for t := range targets {
		if len(targets) == 1 {
			w.errs[t] = c.syncOne(t)
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.syncOne(t)
			<-sem
			if err != nil {
				mu.Lock()
				w.errs[t] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c.flushes.Add(1)
	c.flushedBytes.Add(uint64(bytes))
	close(w.done)
}

func (c *Committer) syncOne(t Target) error {
	c.syncs.Add(1)
	err := t.Flush()
	if err != nil {
		c.syncErrors.Add(1)
	}
	return err
}
