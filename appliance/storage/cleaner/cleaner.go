// Package cleaner schedules log compaction over a node's partitions: it
// picks the logs whose dirty share passed min.cleanable.dirty.ratio (or
// whose oldest uncleaned record passed max.compaction.lag.ms, or whose
// tombstones reached their delete horizon), rolls idle active segments
// after segment.ms so they become cleanable, throttles the cleaner's I/O,
// and retries a failing partition with a growing backoff without stopping
// the cleaning of the others. The compaction itself is partlog.Log.Compact.
package cleaner

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/partlog"
)

// Config tunes the cleaner.
type Config struct {
	Interval         time.Duration // between passes; default 15s
	MaxMapBytes      int64         // key-map memory per compaction; default 32 MiB
	IOBytesPerSecond int64         // read throttle; 0 means unlimited
	Backoff          time.Duration // first retry delay after a failure; default 30s (doubles, up to 30m)
	Now              func() time.Time
	Logger           *slog.Logger
	// Policy returns the cleanup policy of a log whose topic uses a plugin
	// policy, or nil for key compaction.
	Policy func(l *partlog.Log) partlog.Policy
	// Fence returns the offset below which the cleaner may change a log
	// (data federation has shipped), or 0 for no fence.
	Fence func(l *partlog.Log) int64
}

// Stats counts the cleaner's work since start.
type Stats struct {
	Passes, Cleanings, Failures uint64
	BytesRead, BytesWritten     int64
	RecordsRemoved              int64
}

// Cleaner runs compaction passes.
type Cleaner struct {
	cfg  Config
	logs func() []*partlog.Log

	mu      sync.Mutex
	retryAt map[*partlog.Log]time.Time
	backoff map[*partlog.Log]time.Duration
	stats   Stats

	bucket tokenBucket
}

// New returns a cleaner over the logs the function lists.
func New(cfg Config, logs func() []*partlog.Log) *Cleaner {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.MaxMapBytes <= 0 {
		cfg.MaxMapBytes = 32 << 20
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cleaner{cfg: cfg, logs: logs, retryAt: map[*partlog.Log]time.Time{}, backoff: map[*partlog.Log]time.Duration{},
		bucket: tokenBucket{rate: cfg.IOBytesPerSecond}}
}

// Stats returns the counters.
func (c *Cleaner) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Due reports whether a log needs a compaction pass now.
func Due(l *partlog.Log, now time.Time) bool {
	cfg := l.Config()
	if !cfg.Compact {
		return false
	}
	st := l.CleanerState()
	if st.TotalBytes > 0 && st.DirtyBytes > 0 && float64(st.DirtyBytes)/float64(st.TotalBytes) >= cfg.MinCleanableDirtyRatio {
		return true
	}
	if cfg.MaxCompactionLag > 0 && st.DirtyBytes > 0 {
		if ts := l.OldestDirtyTimestamp(); ts >= 0 && now.UnixMilli()-ts > cfg.MaxCompactionLag.Milliseconds() {
			return true
		}
	}
	return st.NextHorizon > 0 && now.UnixMilli() >= st.NextHorizon
}

// Pass runs one round over every log. Failures are returned together; each
// failing log is retried after its backoff.
func (c *Cleaner) Pass() error {
	var errs []error
	c.mu.Lock()
	c.stats.Passes++
	c.mu.Unlock()
	for _, l := range c.logs() {
		now := c.cfg.Now()
		if !l.Config().Compact {
			continue
		}
		if _, err := l.RollIfIdle(now); err != nil && !errors.Is(err, partlog.ErrClosed) {
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		wait := now.Before(c.retryAt[l])
		c.mu.Unlock()
		if wait {
			continue
		}
		opts := partlog.CompactOptions{Now: now, MaxMapBytes: c.cfg.MaxMapBytes, Throttle: c.bucket.take}
		if c.cfg.Policy != nil {
			opts.Policy = c.cfg.Policy(l)
		}
		due := Due(l, now)
		if opts.Policy == nil && !due {
			continue
		}
		if d, ok := opts.Policy.(interface{ DryRun() bool }); ok && d.DryRun() {
			opts.DryRun = true
		}
		// A policy is asked about every sealed segment each pass; its
		// "default" means key compaction only when the log is due.
		opts.DefaultIsKeep = !due
		if c.cfg.Fence != nil {
			opts.Fence = c.cfg.Fence(l)
		}
		res, err := l.Compact(opts)
		c.mu.Lock()
		switch {
		case err == nil:
			c.stats.Cleanings++
			c.stats.BytesRead += res.BytesRead
			c.stats.BytesWritten += res.BytesWritten
			c.stats.RecordsRemoved += res.RecordsRemoved
			delete(c.retryAt, l)
			delete(c.backoff, l)
		case errors.Is(err, partlog.ErrCleaningRaced), errors.Is(err, partlog.ErrClosed):
			// The log changed or went away; the next pass looks again.
		default:
			c.stats.Failures++
			b := c.backoff[l]
			if b == 0 {
				b = c.cfg.Backoff
			} else {
				b = min(2*b, 30*time.Minute)
			}
			c.backoff[l] = b
			c.retryAt[l] = now.Add(b)
			l.SetCleanerRetry(now.Add(b))
			errs = append(errs, fmt.Errorf("clean %s: %w (retry in %v)", l.Name(), err, b))
		}
		c.mu.Unlock()
		switch {
		case err == nil && opts.DryRun && res.RecordsRemoved > 0:
			c.cfg.Logger.Info("cleanup dry run: nothing removed", "partition", l.Name(), "would_remove", res.RecordsRemoved, "segments_read", res.SegmentsRead)
		case err == nil && res.SegmentsWritten+int(res.RecordsRemoved) > 0:
			c.cfg.Logger.Debug("compacted", "partition", l.Name(), "removed", res.RecordsRemoved, "read", res.BytesRead, "written", res.BytesWritten, "took", res.Duration)
		}
	}
	return errors.Join(errs...)
}

// Run runs passes every Interval until stop is closed, logging failures.
func (c *Cleaner) Run(stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := c.Pass(); err != nil {
				c.cfg.Logger.Warn("log cleaner: some partitions failed; the others were cleaned", "err", err)
			}
		}
	}
}

// Throttle returns a function that blocks to hold the bytes it is told of
// to rate bytes per second, as the cleaner's I/O throttle does; nil when
// rate is 0.
func Throttle(rate int64) func(n int) {
	if rate <= 0 {
		return nil
	}
	b := &tokenBucket{rate: rate}
	return b.take
}

// tokenBucket limits bytes per second (rate 0: no limit).
type tokenBucket struct {
	mu     sync.Mutex
	rate   int64
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(n int) {
	if b.rate <= 0 {
		return
	}
	b.mu.Lock()
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*float64(b.rate), float64(b.rate))
	} else {
		b.tokens = float64(b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	wait := time.Duration(0)
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / float64(b.rate) * float64(time.Second))
	}
	b.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
}
