package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/eddybroker/eddy/plugins/abi"
)

// PoolOptions choose the runtime tier of a pool.
type PoolOptions struct {
	// Trusted runs without termination checks: faster, but a deadline
	// cannot stop a runaway call. Only for plugins you wrote.
	Trusted bool
	// MemoryLimitBytes caps each instance's memory; 0 means the engine's.
	MemoryLimitBytes uint64
}

type poolKey struct {
	variant variant
	config  string
}

// guardKind is how a pool stops calls at their deadline.
type guardKind int

const (
	guardNone guardKind = iota // trusted
	guardInterrupt
	guardWazero
)

// Pool runs calls on the instances of one (module, configuration, tier).
// At most Config.Instances instances exist at once; they are created on
// demand and discarded after any failure. A Pool is safe for concurrent
// use.
type Pool struct {
	e       *Engine
	m       *module
	t       *tier
	cm      wazero.CompiledModule
	cfg     []byte
	key     poolKey
	idle    chan *instance
	slots   chan struct{}
	breaker *breaker
	closed  atomic.Bool
	memCap  uint64
	guard   guardKind
	trusted bool

	stats counters
	last  struct {
		sync.Mutex
		err string
		at  time.Time
	}
}

type counters struct {
	calls, records, failures, timeouts, traps, invalid, statuses, rejected, created, recycled, nanos atomic.Uint64
}

// Pool returns the pool for (module d, config, tier), creating it and one
// instance on first use: compilation for a new tier and eddy_init happen
// here, so a configuration the plugin refuses fails now (ErrConfig), not
// on the first call.
func (e *Engine) Pool(ctx context.Context, d Digest, kind abi.Kind, config []byte, o PoolOptions) (*Pool, error) {
	m, err := e.lookup(d)
	if err != nil {
		return nil, err
	}
	if m.info.Kinds&kind != kind {
		return nil, fmt.Errorf("plugin %s: %w: wants %v, has %v", d.Short(), ErrKind, kind, m.info.Kinds)
	}
	memCap := o.MemoryLimitBytes
	if memCap == 0 {
		memCap = e.cfg.MemoryLimitBytes
	}
	pages := pagesFor(memCap)
	v := m.guarded(pages)
	guard := guardWazero
	if v.instrumented {
		guard = guardInterrupt
	}
	if o.Trusted {
		v, guard = variant{tier: tierKey{pages: pages}}, guardNone
	}
	key := poolKey{variant: v, config: string(config)}
	m.mu.Lock()
	p := m.mu.pools[key]
	m.mu.Unlock()
	if p != nil {
		return p, nil
	}
	t, err := e.tier(ctx, v.tier)
	if err != nil {
		return nil, err
	}
	cm, err := m.compiled(ctx, t, v)
	if err != nil {
		return nil, err
	}
	if config == nil {
		config = []byte{}
	}
	p = &Pool{e: e, m: m, t: t, cm: cm, cfg: append([]byte{}, config...), key: key, memCap: uint64(pages) * pageSize, guard: guard, trusted: o.Trusted,
		idle: make(chan *instance, e.cfg.Instances), slots: make(chan struct{}, e.cfg.Instances), breaker: newBreaker(e.cfg.Breaker)}
	p.slots <- struct{}{}
	in, err := p.instantiate(ctx)
	if err != nil {
		<-p.slots
		return nil, fmt.Errorf("bind plugin %s: %w", d.Short(), err)
	}
	p.idle <- in

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.removed {
		p.close()
		return nil, fmt.Errorf("plugin %s: %w", d.Short(), ErrUnknownModule)
	}
	if old := m.mu.pools[key]; old != nil {
		p.close()
		return old, nil
	}
	m.mu.pools[key] = p
	return p, nil
}

// Module returns the pool's module.
func (p *Pool) Module() Module { return p.m.info }

func (p *Pool) instantiate(ctx context.Context) (*instance, error) {
	in, err := newInstance(ctx, p.e, p.t, p.cm, p.cfg, p.m.logs)
	if err != nil {
		return nil, err
	}
	p.stats.created.Add(1)
	return in, nil
}

// get takes an idle instance or creates one when the pool has room, and
// otherwise waits for one. fresh forces a new instance.
func (p *Pool) get(ctx context.Context, fresh bool) (*instance, error) {
	if !fresh {
		select {
		case in := <-p.idle:
			return in, nil
		default:
		}
	}
	for {
		if fresh {
			select {
			case in := <-p.idle:
				p.discard(ctx, in)
			default:
			}
		}
		select {
		case in := <-p.idle:
			if fresh {
				p.discard(ctx, in)
				continue
			}
			return in, nil
		case p.slots <- struct{}{}:
			in, err := p.instantiate(ctx)
			if err != nil {
				<-p.slots
				return nil, err
			}
			return in, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a plugin instance: %w", ctx.Err())
		}
	}
}

// put returns a healthy instance to the pool, or discards it.
func (p *Pool) put(ctx context.Context, in *instance, healthy bool) {
	if !healthy || p.closed.Load() {
		p.discard(ctx, in)
		return
	}
	if in.calls >= p.e.cfg.MaxCallsPerInstance || uint64(in.mem.Size()) > p.memCap/4*3 {
		p.stats.recycled.Add(1)
		p.discard(ctx, in)
		return
	}
	p.idle <- in
	if p.closed.Load() { // closed meanwhile: drain what we just added
		p.drain()
	}
}

func (p *Pool) discard(ctx context.Context, in *instance) {
	in.close(ctx)
	<-p.slots
}

func (p *Pool) drain() {
	for {
		select {
		case in := <-p.idle:
			p.discard(context.Background(), in)
		default:
			return
		}
	}
}

func (p *Pool) close() {
	p.closed.Store(true)
	p.drain()
}

// do runs f on an instance under the breaker, with the per-call deadline
// (guarded tiers), retrying once on a fresh instance after ERR_RETRY.
// Any error closes the instance; plugin faults count against the breaker.
func (p *Pool) do(ctx context.Context, op string, timeout time.Duration, records int, f func(cctx context.Context, in *instance) error) error {
	if p.closed.Load() {
		return fmt.Errorf("plugin %s: %w", p.m.info.Digest.Short(), ErrUnknownModule)
	}
	now := p.e.cfg.Now()
	ok, trial := p.breaker.allow(now)
	if !ok {
		p.stats.rejected.Add(1)
		st := p.breaker.status()
		if obs := p.e.cfg.Observe; obs != nil {
			obs(p.m.info.Digest, op, 0, "open-circuit")
		}
		return &CallError{Digest: p.m.info.Digest, Op: op, Err: fmt.Errorf("%w until %s; last error: %s", ErrCircuitOpen, st.openUntil.Format(time.RFC3339), p.lastError())}
	}
	start := time.Now()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var in *instance
		in, err = p.get(ctx, attempt > 0)
		if err != nil {
			break
		}
		clean := true
		in.parent = ctx
		switch p.guard {
		case guardWazero:
			cctx, cancel := context.WithTimeout(ctx, timeout)
			err = f(cctx, in)
			cancel()
		case guardInterrupt:
			in.arm(ctx, timeout)
			err = f(ctx, in)
			clean = in.disarm()
		default:
			err = f(ctx, in)
		}
		if err != nil {
			err = in.fail(op, err)
		}
		p.put(ctx, in, err == nil && clean)
		var ce *CallError
		if err == nil || attempt == 1 || !errors.As(err, &ce) || ce.Status != abi.StatusRetry {
			break
		}
		p.noteFailure(err)
	}
	p.stats.calls.Add(1)
	p.stats.nanos.Add(uint64(time.Since(start)))
	o := success
	if err != nil {
		o = failure
		var ce *CallError
		if errors.As(err, &ce) && !ce.pluginFault() || ctx.Err() != nil {
			o = neutral
		} else {
			p.noteFailure(err)
		}
	} else {
		p.stats.records.Add(uint64(records))
	}
	p.breaker.done(p.e.cfg.Now(), trial, o)
	if obs := p.e.cfg.Observe; obs != nil {
		obs(p.m.info.Digest, op, time.Since(start), failureKind(err))
	}
	if o == failure && p.breaker.status().state == Degraded {
		p.m.logs.add(slog.LevelWarn, "host", "", fmt.Sprintf("circuit open after repeated failures: %v", err))
	}
	return err
}

// failureKind names the kind of a call's failure for metrics; "" for none.
func failureKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrTrap):
		return "trap"
	case errors.Is(err, ErrInvalidOutput):
		return "invalid"
	case errors.Is(err, ErrStatus), errors.Is(err, ErrConfig):
		return "status"
	}
	return "other"
}

// noteFailure counts a plugin failure by kind and keeps it as the last error.
func (p *Pool) noteFailure(err error) {
	p.stats.failures.Add(1)
	switch {
	case errors.Is(err, ErrTimeout):
		p.stats.timeouts.Add(1)
	case errors.Is(err, ErrTrap):
		p.stats.traps.Add(1)
	case errors.Is(err, ErrInvalidOutput):
		p.stats.invalid.Add(1)
	case errors.Is(err, ErrStatus), errors.Is(err, ErrConfig):
		p.stats.statuses.Add(1)
	}
	p.last.Lock()
	p.last.err, p.last.at = err.Error(), p.e.cfg.Now()
	p.last.Unlock()
}

func (p *Pool) lastError() string {
	p.last.Lock()
	defer p.last.Unlock()
	return p.last.err
}
