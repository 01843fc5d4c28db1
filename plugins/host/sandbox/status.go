package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Counters are cumulative figures of a pool (or, summed, a module).
type Counters struct {
	Calls             uint64 // calls made (including failed ones)
	Records           uint64 // records in successful calls
	Failures          uint64 // plugin failures of any kind
	Timeouts          uint64
	Traps             uint64
	InvalidOutputs    uint64
	ErrorStatuses     uint64 // negative statuses, including ERR_CONFIG at init
	BreakerRejections uint64 // calls refused while the circuit was open
	Instantiations    uint64
	Recycles          uint64 // instances retired after MaxCallsPerInstance or memory growth
	Duration          time.Duration
}

func (c *Counters) add(o Counters) {
	c.Calls += o.Calls
	c.Records += o.Records
	c.Failures += o.Failures
	c.Timeouts += o.Timeouts
	c.Traps += o.Traps
	c.InvalidOutputs += o.InvalidOutputs
	c.ErrorStatuses += o.ErrorStatuses
	c.BreakerRejections += o.BreakerRejections
	c.Instantiations += o.Instantiations
	c.Recycles += o.Recycles
	c.Duration += o.Duration
}

// PoolStatus is the state of one pool.
type PoolStatus struct {
	ConfigDigest     string // sha256 of the configuration bytes, hex
	Trusted          bool
	MemoryLimitBytes uint64
	State            State
	OpenUntil        time.Time // when Degraded
	Backoff          time.Duration
	TimesOpened      uint64
	RecentFailures   int // failures inside the breaker's window
	Instances        int // live instances
	Idle             int
	LastError        string
	LastErrorAt      time.Time
	Counters         Counters
}

// Status is the state of one module: Degraded when any of its pools is.
type Status struct {
	Module      Module
	State       State
	LastError   string
	LastErrorAt time.Time
	LogsDropped uint64 // log lines over the rate limit
	Counters    Counters
	Pools       []PoolStatus
}

// Status returns the pool's state.
func (p *Pool) Status() PoolStatus {
	b := p.breaker.status()
	cfg := sha256.Sum256(p.cfg)
	p.last.Lock()
	lastErr, lastAt := p.last.err, p.last.at
	p.last.Unlock()
	s := &p.stats
	return PoolStatus{
		ConfigDigest: hex.EncodeToString(cfg[:]), Trusted: p.trusted, MemoryLimitBytes: p.memCap,
		State: b.state, OpenUntil: b.openUntil, Backoff: b.backoff, TimesOpened: b.opened, RecentFailures: b.recent,
		Instances: len(p.slots), Idle: len(p.idle), LastError: lastErr, LastErrorAt: lastAt,
		Counters: Counters{
			Calls: s.calls.Load(), Records: s.records.Load(), Failures: s.failures.Load(), Timeouts: s.timeouts.Load(),
			Traps: s.traps.Load(), InvalidOutputs: s.invalid.Load(), ErrorStatuses: s.statuses.Load(),
			BreakerRejections: s.rejected.Load(), Instantiations: s.created.Load(), Recycles: s.recycled.Load(),
			Duration: time.Duration(s.nanos.Load()),
		},
	}
}

// Status returns a module's state, counters and pools.
func (e *Engine) Status(d Digest) (Status, error) {
	m, err := e.lookup(d)
	if err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	pools := make([]*Pool, 0, len(m.mu.pools))
	for _, p := range m.mu.pools {
		pools = append(pools, p)
	}
	m.mu.Unlock()
	st := Status{Module: m.info, State: Healthy, LogsDropped: m.logs.dropped()}
	for _, p := range pools {
		ps := p.Status()
		st.Pools = append(st.Pools, ps)
		st.Counters.add(ps.Counters)
		if ps.State != Healthy {
			st.State = Degraded
		}
		if ps.LastErrorAt.After(st.LastErrorAt) {
			st.LastError, st.LastErrorAt = ps.LastError, ps.LastErrorAt
		}
	}
	return st, nil
}
