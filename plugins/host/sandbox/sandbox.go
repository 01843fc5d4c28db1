// Package sandbox runs Eddy plugins (WebAssembly modules, contract in
// plugins/abi and docs/PLUGIN-ABI.md) in wazero: a registry of modules
// compiled once at registration into an optional on-disk cache, pools of
// instances per (module, configuration, runtime tier), memory caps,
// per-call deadlines, output validation, a circuit breaker per pool, and
// bounded, rate-limited capture of plugin logs, stdout and stderr.
//
// It speaks RBV1 buffers (abi.Input in, validated views out) and knows
// nothing of Kafka record batches; package plugins/host adapts it to the
// broker's RecordBatch v2 and sdk/plugin/plugintest to plugin tests.
//
// Calls run guarded by default: a deadline (or the caller's context) stops
// a runaway guest. The default guard rewrites each module so that loop
// iterations and calls count down to a poll of an injected global the host
// sets when the deadline passes (see instrument.go: a few register
// operations per loop iteration); a module it cannot rewrite is refused.
// Config.Guard = GuardWazero uses wazero's WithCloseOnContextDone instead,
// which exits to Go at every loop head, costs 4-8x on Go guests and does
// not see a guest that calls without looping. A binding may opt in to
// Trusted, which runs the original module with no termination checks.
//
// A tier is one wazero runtime with one memory cap, with or without
// wazero's context checks. Modules are compiled for their default variant
// when registered; a binding that asks for another tier or for trusted
// code compiles there when it is created (a disk-cache hit when CacheDir
// is set), never during a call.
//
// Any error, trap, timeout, invalid output or negative status closes the
// instance that produced it; the pool creates a fresh one on a later call,
// unless its breaker is open.
package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/eddybroker/eddy/plugins/abi"
)

// Errors. Failures of a call are *CallError values wrapping one of them.
var (
	ErrModuleTooLarge  = errors.New("sandbox: module too large")
	ErrInvalidModule   = errors.New("sandbox: invalid module")
	ErrForbiddenImport = errors.New("sandbox: import outside the ABI")
	ErrMissingExport   = errors.New("sandbox: missing or mistyped export")
	ErrABIVersion      = errors.New("sandbox: unsupported ABI version")
	ErrUnknownModule   = errors.New("sandbox: unknown module")
	ErrKind            = errors.New("sandbox: module does not implement this kind")
	ErrConfig          = errors.New("sandbox: plugin refused its configuration")
	ErrCircuitOpen     = errors.New("sandbox: circuit open, plugin degraded")
	ErrTimeout         = errors.New("sandbox: plugin call timed out")
	ErrTrap            = errors.New("sandbox: plugin trapped")
	ErrStatus          = errors.New("sandbox: plugin returned an error status")
	ErrInvalidOutput   = errors.New("sandbox: invalid plugin output")
	ErrInstantiate     = errors.New("sandbox: instantiate plugin")
	ErrClosed          = errors.New("sandbox: closed")
)

// Digest is the SHA-256 of a module's bytes, its identity.
type Digest [32]byte

// DigestOf returns the digest of wasm.
func DigestOf(wasm []byte) Digest { return sha256.Sum256(wasm) }

// String returns "sha256:<hex>".
func (d Digest) String() string { return "sha256:" + hex.EncodeToString(d[:]) }

// Short returns the first 12 hex digits.
func (d Digest) Short() string { return hex.EncodeToString(d[:6]) }

// ParseDigest reads "sha256:<hex>" or bare hex.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h := strings.TrimPrefix(s, "sha256:")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("parse digest %q: want sha256:<64 hex digits>", s)
	}
	copy(d[:], b)
	return d, nil
}

// Timeouts are the default deadlines per call, by stage.
type Timeouts struct {
	Partition, Produce, Fetch, Federate, Cleanup time.Duration
}

// For returns the deadline of stage s.
func (t Timeouts) For(s abi.Stage) time.Duration {
	switch s {
	case abi.StagePartition:
		return t.Partition
	case abi.StageProduce:
		return t.Produce
	case abi.StageFetch:
		return t.Fetch
	case abi.StageFederate:
		return t.Federate
	}
	return t.Cleanup
}

// BreakerConfig sets the circuit breaker of each pool: MaxFailures within
// Window open it; it stays open for a backoff that starts at MinBackoff and
// doubles on each failed trial, up to MaxBackoff.
type BreakerConfig struct {
	MaxFailures int
	Window      time.Duration
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
}

// Guard selects how guarded calls are stopped at their deadline.
type Guard int

// The guards.
const (
	// GuardInterrupt instruments loops and calls to poll a host-set
	// global (the default). Modules the instrumenter cannot rewrite are
	// refused.
	GuardInterrupt Guard = iota
	// GuardWazero uses wazero's WithCloseOnContextDone.
	GuardWazero
)

func (g Guard) String() string {
	if g == GuardWazero {
		return "wazero"
	}
	return "interrupt"
}

// Config configures an Engine. Zero fields take the defaults of
// docs/PLUGIN-ABI.md §6.5.
type Config struct {
	// CacheDir holds compiled code across restarts; "" keeps it in memory.
	CacheDir string
	// Interpreter runs modules on wazero's interpreter instead of its
	// compiler: slower, but it maps no executable memory (for hosts that
	// enforce W^X, such as systemd's MemoryDenyWriteExecute=yes).
	Interpreter bool
	// Guard selects the deadline mechanism of guarded calls.
	Guard Guard
	// MaxModuleBytes caps a module's size (16 MiB).
	MaxModuleBytes int
	// MemoryLimitBytes caps each instance's linear memory (32 MiB).
	MemoryLimitBytes uint64
	// Instances caps the instances of each pool (GOMAXPROCS).
	Instances int
	// MaxCallsPerInstance recycles an instance after this many calls (100,000).
	MaxCallsPerInstance int
	// InitTimeout bounds instantiation plus eddy_init (2 s).
	InitTimeout time.Duration
	// Timeouts are the per-call deadlines by stage (50 ms partition,
	// 100 ms produce and fetch, 1 s federate, 5 s cleanup).
	Timeouts Timeouts
	// Breaker configures the circuit breakers (5 failures a minute, 1 s to 5 min).
	Breaker BreakerConfig
	// LogLinesPerSecond rate-limits each module's log lines (100).
	LogLinesPerSecond int
	// LogHistory is how many recent log lines each module keeps (200).
	LogHistory int
	// StderrBytes sizes each instance's stdout/stderr tail (8 KiB).
	StderrBytes int
	// Logger receives plugin log lines and lifecycle events (discarded when nil).
	Logger *slog.Logger
	// Now is the clock for breakers and logs (time.Now).
	Now func() time.Time
	// Observe, if set, hears of every call: the module, the export called
	// (abi.ExportPartition, ExportTransform, ExportCleanupSegment or
	// ExportCleanupRecords), its duration, and "" or why it failed
	// (timeout, trap, invalid, status, open-circuit, other).
	Observe func(d Digest, op string, dur time.Duration, failure string)
}

func (c *Config) setDefaults() {
	if c.MaxModuleBytes <= 0 {
		c.MaxModuleBytes = abi.MaxModuleBytes
	}
	if c.MemoryLimitBytes == 0 {
		c.MemoryLimitBytes = 32 << 20
	}
	if c.Instances <= 0 {
		c.Instances = runtime.GOMAXPROCS(0)
	}
	if c.MaxCallsPerInstance <= 0 {
		c.MaxCallsPerInstance = 100_000
	}
	if c.InitTimeout <= 0 {
		c.InitTimeout = 2 * time.Second
	}
	t := &c.Timeouts
	for _, f := range []struct {
		p *time.Duration
		d time.Duration
	}{{&t.Partition, 50 * time.Millisecond}, {&t.Produce, 100 * time.Millisecond}, {&t.Fetch, 100 * time.Millisecond}, {&t.Federate, time.Second}, {&t.Cleanup, 5 * time.Second}} {
		if *f.p <= 0 {
			*f.p = f.d
		}
	}
	b := &c.Breaker
	if b.MaxFailures <= 0 {
		b.MaxFailures = 5
	}
	if b.Window <= 0 {
		b.Window = time.Minute
	}
	if b.MinBackoff <= 0 {
		b.MinBackoff = time.Second
	}
	if b.MaxBackoff < b.MinBackoff {
		b.MaxBackoff = max(5*time.Minute, b.MinBackoff)
	}
	if c.LogLinesPerSecond <= 0 {
		c.LogLinesPerSecond = 100
	}
	if c.LogHistory <= 0 {
		c.LogHistory = 200
	}
	if c.StderrBytes <= 0 {
		c.StderrBytes = 8 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

const pageSize = 64 << 10

// pagesFor converts a byte cap to wasm pages (at least 1, at most 65536).
func pagesFor(bytes uint64) uint32 {
	p := (bytes + pageSize - 1) / pageSize
	return uint32(min(max(p, 1), 65536))
}

// Module describes a registered module.
type Module struct {
	Digest     Digest
	Size       int
	Kinds      abi.Kind
	ABIVersion abi.Version
	Imports    []string // "module.field"
	Registered time.Time
	Guard      Guard // how guarded calls of this module are stopped
}

// Engine owns the runtimes, the registry and the pools. It is safe for
// concurrent use.
type Engine struct {
	cfg Config
	// validator checks a module's own bytes before they are rewritten for
	// the interrupt guard (nil under GuardWazero); the interpreter
	// validates as the compiler does, at a fraction of its cost.
	validator wazero.Runtime

	mu struct {
		sync.Mutex
		closed  bool
		tiers   map[tierKey]*tier
		modules map[Digest]*module
	}
}

type tierKey struct {
	wazeroGuard bool // WithCloseOnContextDone
	pages       uint32
}

// variant is one compilation of a module: in a tier, from the original or
// the instrumented bytes.
type variant struct {
	tier         tierKey
	instrumented bool
}

// tier is one wazero runtime with its host modules.
type tier struct {
	key     tierKey
	rt      wazero.Runtime
	cache   wazero.CompilationCache
	wasi    map[string]funcSig // exported WASI functions
	byName  sync.Map           // instance name -> *instance, for host functions
	nextSeq atomic.Uint64
}

type module struct {
	info         Module
	wasm         []byte
	instrumented []byte // nil when the module runs under GuardWazero
	logs         *logSink

	mu struct {
		sync.Mutex
		removed  bool
		compiled map[variant]wazero.CompiledModule
		pools    map[poolKey]*Pool
	}
}

// guarded returns the variant guarded calls use with a memory cap of pages.
func (m *module) guarded(pages uint32) variant {
	if m.instrumented != nil {
		return variant{tier: tierKey{pages: pages}, instrumented: true}
	}
	return variant{tier: tierKey{wazeroGuard: true, pages: pages}}
}

// New creates an engine.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	e := &Engine{cfg: cfg}
	e.mu.tiers = map[tierKey]*tier{}
	e.mu.modules = map[Digest]*module{}
	if _, err := e.tier(context.Background(), e.defaultTier()); err != nil {
		return nil, err
	}
	if cfg.Guard == GuardInterrupt {
		e.validator = wazero.NewRuntimeWithConfig(context.Background(),
			wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(pagesFor(cfg.MemoryLimitBytes)))
	}
	return e, nil
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) defaultTier() tierKey {
	return tierKey{wazeroGuard: e.cfg.Guard == GuardWazero, pages: pagesFor(e.cfg.MemoryLimitBytes)}
}

// tier returns the runtime for k, creating it on first use.
func (e *Engine) tier(ctx context.Context, k tierKey) (*tier, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return nil, ErrClosed
	}
	if t := e.mu.tiers[k]; t != nil {
		return t, nil
	}
	// Each tier has its own cache object: tiers with different memory
	// caps must not share wazero's in-memory engine, while the directory
	// (content-addressed, written by rename) is safely shared.
	var cache wazero.CompilationCache
	if e.cfg.CacheDir != "" {
		var err error
		cache, err = wazero.NewCompilationCacheWithDir(e.cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open plugin compilation cache %s: %w", e.cfg.CacheDir, err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfigCompiler()
	if e.cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rc = rc.WithCloseOnContextDone(k.wazeroGuard).
		WithMemoryLimitPages(k.pages).
		WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	t := &tier{key: k, rt: rt, cache: cache}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate %s host module: %w", abi.WASIModule, err)
	}
	t.wasi = map[string]funcSig{}
	for name, def := range rt.Module(abi.WASIModule).ExportedFunctionDefinitions() {
		t.wasi[name] = sigOf(def)
	}
	if err := t.instantiateHostModule(ctx, e); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	e.mu.tiers[k] = t
	return t, nil
}

// Register validates and compiles wasm and adds it to the registry. It is
// idempotent: registering the same bytes again returns the same Module.
// It refuses modules over the size cap, invalid wasm, imports outside the
// ABI, missing exports, a command (not a reactor), an unsupported ABI
// version and modules that implement no kind.
func (e *Engine) Register(ctx context.Context, wasm []byte) (Module, error) {
	if len(wasm) > e.cfg.MaxModuleBytes {
		return Module{}, fmt.Errorf("register plugin: %w: %d bytes, the cap is %d", ErrModuleTooLarge, len(wasm), e.cfg.MaxModuleBytes)
	}
	d := DigestOf(wasm)
	e.mu.Lock()
	if m := e.mu.modules[d]; m != nil {
		e.mu.Unlock()
		return m.info, nil
	}
	e.mu.Unlock()
	if err := checkImportSection(wasm); err != nil {
		return Module{}, fmt.Errorf("register plugin %s: %w", d.Short(), err)
	}
	sink := newLogSink(e.cfg, d)
	pages := pagesFor(e.cfg.MemoryLimitBytes)
	v := variant{tier: tierKey{wazeroGuard: e.cfg.Guard == GuardWazero, pages: pages}}
	t, err := e.tier(ctx, v.tier)
	if err != nil {
		return Module{}, fmt.Errorf("register plugin %s: %w", d.Short(), err)
	}
	var cm wazero.CompiledModule
	var instrumented []byte
	var unguardable error // why the module cannot take the interrupt guard
	if e.cfg.Guard == GuardInterrupt {
		// The module's own bytes are validated first: the rewrite adds a
		// local, a label, types and an export, which code that names
		// them (invalid before) would find.
		vcm, err := e.validator.CompileModule(ctx, wasm)
		if err != nil {
			return Module{}, fmt.Errorf("register plugin %s: %w: %w", d.Short(), ErrInvalidModule, err)
		}
		_ = vcm.Close(ctx)
		if instrumented, err = instrument(wasm); err != nil {
			unguardable, instrumented = err, nil
		} else if cm, err = t.rt.CompileModule(ctx, instrumented); err != nil {
			unguardable, instrumented = fmt.Errorf("the instrumented module does not compile: %w", err), nil
		} else {
			v.instrumented = true
		}
	}
	if instrumented == nil {
		// Under wazero's guard; or to be inspected (an ABI fault is
		// named first) and refused as unguardable.
		if cm, err = t.rt.CompileModule(ctx, wasm); err != nil {
			return Module{}, fmt.Errorf("register plugin %s: %w: %w", d.Short(), ErrInvalidModule, err)
		}
	}
	info, err := e.inspect(ctx, t, cm, sink)
	if err != nil {
		_ = cm.Close(ctx)
		return Module{}, fmt.Errorf("register plugin %s: %w", d.Short(), err)
	}
	if unguardable != nil {
		// The module meets the ABI, but wazero's guard checks loop heads
		// only: a guest that calls without looping would escape it, and
		// stall the process at its next garbage collection. Refused.
		_ = cm.Close(ctx)
		return Module{}, fmt.Errorf("register plugin %s: %w: it cannot be guarded: %w", d.Short(), ErrInvalidModule, unguardable)
	}
	info.Digest, info.Size, info.Registered = d, len(wasm), e.cfg.Now()
	info.Guard = GuardWazero
	if instrumented != nil {
		info.Guard = GuardInterrupt
	}
	m := &module{info: info, wasm: wasm, instrumented: instrumented, logs: sink}
	m.mu.compiled = map[variant]wazero.CompiledModule{v: cm}
	m.mu.pools = map[poolKey]*Pool{}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		_ = cm.Close(ctx)
		return Module{}, ErrClosed
	}
	if old := e.mu.modules[d]; old != nil {
		_ = cm.Close(ctx)
		return old.info, nil
	}
	e.mu.modules[d] = m
	e.cfg.Logger.Info("plugin registered", "digest", d.String(), "kinds", info.Kinds.String(), "abi", info.ABIVersion.String(), "bytes", len(wasm))
	return info, nil
}

// Module returns a registered module.
func (e *Engine) Module(d Digest) (Module, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.mu.modules[d]
	if m == nil {
		return Module{}, false
	}
	return m.info, true
}

// Modules returns every registered module, by digest.
func (e *Engine) Modules() []Module {
	e.mu.Lock()
	out := make([]Module, 0, len(e.mu.modules))
	for _, m := range e.mu.modules {
		out = append(out, m.info)
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Digest.String() < out[j].Digest.String() })
	return out
}

// Remove unregisters a module: its pools close (calls in flight finish),
// later calls on its bindings fail with ErrUnknownModule.
func (e *Engine) Remove(ctx context.Context, d Digest) error {
	e.mu.Lock()
	m := e.mu.modules[d]
	delete(e.mu.modules, d)
	e.mu.Unlock()
	if m == nil {
		return fmt.Errorf("remove plugin %s: %w", d.Short(), ErrUnknownModule)
	}
	m.close(ctx)
	e.cfg.Logger.Info("plugin removed", "digest", d.String())
	return nil
}

func (m *module) close(ctx context.Context) {
	m.mu.Lock()
	m.mu.removed = true
	pools := m.mu.pools
	compiled := m.mu.compiled
	m.mu.pools, m.mu.compiled = nil, nil
	m.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
	for _, cm := range compiled {
		_ = cm.Close(ctx)
	}
}

// Close closes every pool and runtime.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.closed = true
	mods, tiers := e.mu.modules, e.mu.tiers
	e.mu.modules, e.mu.tiers = nil, nil
	e.mu.Unlock()
	for _, m := range mods {
		m.close(ctx)
	}
	var errs []error
	if e.validator != nil {
		if err := e.validator.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close plugin validator: %w", err))
		}
	}
	for _, t := range tiers {
		if err := t.rt.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close plugin runtime: %w", err))
		}
		if err := t.cache.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close plugin compilation cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) lookup(d Digest) (*module, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return nil, ErrClosed
	}
	m := e.mu.modules[d]
	if m == nil {
		return nil, fmt.Errorf("plugin %s: %w", d.Short(), ErrUnknownModule)
	}
	return m, nil
}

// compiled returns variant v of the module (t is v's tier), compiling it
// on first use (binding time, never call time).
func (m *module) compiled(ctx context.Context, t *tier, v variant) (wazero.CompiledModule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.removed {
		return nil, fmt.Errorf("plugin %s: %w", m.info.Digest.Short(), ErrUnknownModule)
	}
	if cm := m.mu.compiled[v]; cm != nil {
		return cm, nil
	}
	code := m.wasm
	if v.instrumented {
		code = m.instrumented
	}
	cm, err := t.rt.CompileModule(ctx, code)
	if err != nil {
		return nil, fmt.Errorf("compile plugin %s (memory %d pages): %w", m.info.Digest.Short(), v.tier.pages, err)
	}
	m.mu.compiled[v] = cm
	return cm, nil
}

// Logs returns the module's recent log lines (plugin logs, stdout, stderr
// and host events), oldest first.
func (e *Engine) Logs(d Digest) ([]LogLine, error) {
	m, err := e.lookup(d)
	if err != nil {
		return nil, err
	}
	return m.logs.recent(), nil
}
