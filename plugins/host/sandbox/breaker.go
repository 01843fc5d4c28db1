package sandbox

import (
	"sync"
	"time"
)

// State is the health of a pool or module.
type State string

// The states.
const (
	Healthy  State = "healthy"
	Degraded State = "degraded" // circuit open: calls fail fast until the backoff ends
	Probing  State = "probing"  // backoff over: one trial call decides
)

type outcome int

const (
	success outcome = iota
	failure
	neutral // the caller gave up; says nothing about the plugin
)

// breaker opens after MaxFailures failures within Window, then lets one
// trial call through after a backoff that doubles (MinBackoff up to
// MaxBackoff) each time a trial fails; a successful trial closes it.
type breaker struct {
	cfg BreakerConfig

	mu struct {
		sync.Mutex
		state     State
		fails     []time.Time
		openUntil time.Time
		backoff   time.Duration
		trial     bool
		opened    uint64
	}
}

func newBreaker(cfg BreakerConfig) *breaker {
	b := &breaker{cfg: cfg}
	b.mu.state = Healthy
	return b
}

// allow reports whether a call may start; trial is true for the one call
// that probes an open circuit.
func (b *breaker) allow(now time.Time) (ok, trial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.mu.state {
	case Healthy:
		return true, false
	case Degraded:
		if now.Before(b.mu.openUntil) {
			return false, false
		}
		b.mu.state = Probing
		fallthrough
	default: // Probing
		if b.mu.trial {
			return false, false
		}
		b.mu.trial = true
		return true, true
	}
}

// done records the outcome of a call allow let through.
func (b *breaker) done(now time.Time, trial bool, o outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if trial {
		b.mu.trial = false
		switch o {
		case success:
			b.mu.state, b.mu.backoff, b.mu.fails = Healthy, 0, b.mu.fails[:0]
		case failure:
			b.openLocked(now, min(2*b.mu.backoff, b.cfg.MaxBackoff))
		}
		return
	}
	if o != failure || b.mu.state != Healthy {
		return
	}
	cut := now.Add(-b.cfg.Window)
	keep := b.mu.fails[:0]
	for _, t := range b.mu.fails {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	b.mu.fails = append(keep, now)
	if len(b.mu.fails) >= b.cfg.MaxFailures {
		b.openLocked(now, b.cfg.MinBackoff)
	}
}

func (b *breaker) openLocked(now time.Time, backoff time.Duration) {
	b.mu.state, b.mu.backoff = Degraded, max(backoff, b.cfg.MinBackoff)
	b.mu.openUntil = now.Add(b.mu.backoff)
	b.mu.fails = b.mu.fails[:0]
	b.mu.opened++
}

type breakerStatus struct {
	state     State
	openUntil time.Time
	backoff   time.Duration
	opened    uint64
	recent    int
}

func (b *breaker) status() breakerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return breakerStatus{state: b.mu.state, openUntil: b.mu.openUntil, backoff: b.mu.backoff, opened: b.mu.opened, recent: len(b.mu.fails)}
}
