package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/eddybroker/eddy/plugins/abi"
)

// CallError is the error of a failed plugin call or instantiation. It
// wraps one of the package's sentinels (ErrTimeout, ErrTrap, ErrStatus,
// ErrInvalidOutput, ErrConfig, ErrInstantiate, ErrCircuitOpen) or, when the
// caller's context ended, the context's error.
type CallError struct {
	Digest  Digest
	Op      string     // the export or step that failed
	Status  abi.Status // the negative status, for ErrStatus and ErrConfig
	Code    uint32     // the code the plugin passed to set_error
	Message string     // the message the plugin passed to set_error
	Stderr  string     // the instance's recent stdout/stderr
	Err     error
}

func (e *CallError) Error() string {
	s := fmt.Sprintf("plugin %s: %s: %v", e.Digest.Short(), e.Op, e.Err)
	if e.Status < 0 {
		s += " (" + e.Status.String() + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if t := summary(e.Stderr); t != "" {
		s += "; output: " + t
	}
	return s
}

// summary picks from a guest's output what explains a failure: the Go
// runtime's "fatal error:" or "panic:" line when there is one, else the
// last 512 bytes.
func summary(out string) string {
	for _, mark := range []string{"fatal error: ", "panic: "} {
		if i := strings.LastIndex(out, mark); i >= 0 {
			line := out[i:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			return line
		}
	}
	if len(out) > 512 {
		return "…" + out[len(out)-512:]
	}
	return out
}

func (e *CallError) Unwrap() error { return e.Err }

// pluginFault reports whether the failure counts against the plugin (its
// breaker), as opposed to the caller giving up.
func (e *CallError) pluginFault() bool {
	if errors.Is(e.Err, ErrTimeout) {
		return true
	}
	return !errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded)
}

// instance is one instantiated module, used by one call at a time.
type instance struct {
	e    *Engine
	t    *tier
	sink *logSink
	d    Digest
	name string
	mod  api.Module
	mem  api.Memory

	fnAlloc, fnFree, fnInit                 api.Function
	fnPartition, fnTransform, fnSeg, fnRecs api.Function
	abiVersion                              uint32

	stack          []uint64
	interrupt      api.MutableGlobal // nil unless the module is instrumented
	timer          *time.Timer
	stopCtx        func() bool
	fired          atomic.Int32    // firedDeadline or firedContext once the interrupt is set
	parent         context.Context // the caller's context of the current call
	inPtr, inCap   uint32
	outPtr, outCap uint32
	calls          int

	// Per-call state set by the eddy_v1 host functions.
	outSet         bool
	outPtrSet      uint32
	outLenSet      uint32
	errSet         bool
	errCode        uint32
	errMsg         string
	hostErr        error
	tail           *tailRing
	stdout, stderr *lineWriter
}

const (
	firedDeadline = 1
	firedContext  = 2
)

// newInstance instantiates cm in tier t, runs _initialize, reads the ABI
// version and, when cfg is not nil, calls eddy_init with it, all within
// Config.InitTimeout.
func newInstance(ctx context.Context, e *Engine, t *tier, cm wazero.CompiledModule, cfg []byte, sink *logSink) (_ *instance, err error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, e.cfg.InitTimeout)
	defer cancel()
	name := fmt.Sprintf("%s-%d", sink.digest.Short(), t.nextSeq.Add(1))
	in := &instance{e: e, t: t, sink: sink, d: sink.digest, name: name, stack: make([]uint64, 3), tail: newTailRing(e.cfg.StderrBytes), parent: parent}
	in.stdout = &lineWriter{in: in, source: "stdout", level: slog.LevelInfo}
	in.stderr = &lineWriter{in: in, source: "stderr", level: slog.LevelWarn}
	t.byName.Store(name, in)
	mc := wazero.NewModuleConfig().WithName(name).WithStartFunctions().
		WithStdout(in.stdout).WithStderr(in.stderr)
	mod, err := t.rt.InstantiateModule(ctx, cm, mc)
	if err != nil {
		t.byName.Delete(name)
		return nil, in.fail(abi.ExportInitialize, fmt.Errorf("%w: %w", ErrInstantiate, err))
	}
	in.mod, in.mem = mod, mod.Memory()
	if in.mem == nil {
		in.close(ctx)
		return nil, in.fail("instantiate", fmt.Errorf("%w: no memory", ErrInstantiate))
	}
	if g, ok := mod.ExportedGlobal(InterruptExport).(api.MutableGlobal); ok {
		in.interrupt = g
		in.arm(parent, e.cfg.InitTimeout)
		defer func() {
			if !in.disarm() && err == nil {
				in.close(ctx)
				err = in.fail(abi.ExportInit, fmt.Errorf("%w: initialisation interrupted", ErrTimeout))
			}
		}()
	}
	if fn := mod.ExportedFunction(abi.ExportInitialize); fn != nil {
		if err := fn.CallWithStack(ctx, in.stack); err != nil {
			in.close(ctx)
			return nil, in.fail(abi.ExportInitialize, in.classify(ctx, err))
		}
	}
	if err := mod.ExportedFunction(abi.ExportABIVersion).CallWithStack(ctx, in.stack); err != nil {
		in.close(ctx)
		return nil, in.fail(abi.ExportABIVersion, in.classify(ctx, err))
	}
	in.abiVersion = uint32(in.stack[0])
	in.fnAlloc = mod.ExportedFunction(abi.ExportAlloc)
	in.fnFree = mod.ExportedFunction(abi.ExportFree)
	in.fnInit = mod.ExportedFunction(abi.ExportInit)
	in.fnPartition = mod.ExportedFunction(abi.ExportPartition)
	in.fnTransform = mod.ExportedFunction(abi.ExportTransform)
	in.fnSeg = mod.ExportedFunction(abi.ExportCleanupSegment)
	in.fnRecs = mod.ExportedFunction(abi.ExportCleanupRecords)
	if cfg != nil && in.fnInit != nil {
		if err := in.init(ctx, cfg); err != nil {
			in.close(ctx)
			return nil, err
		}
	}
	return in, nil
}

func (in *instance) init(ctx context.Context, cfg []byte) error {
	var ptr uint32
	if len(cfg) > 0 {
		p, err := in.buffer(ctx, &in.inPtr, &in.inCap, uint32(len(cfg)))
		if err != nil {
			return in.fail(abi.ExportInit, err)
		}
		ptr = p
		if !in.mem.Write(ptr, cfg) {
			return in.fail(abi.ExportInit, fmt.Errorf("%w: eddy_alloc returned a buffer outside memory", ErrInvalidOutput))
		}
	}
	st, err := in.invoke(ctx, in.fnInit, uint64(ptr), uint64(len(cfg)))
	if err != nil {
		return in.fail(abi.ExportInit, err)
	}
	if st < 0 {
		sentinel := ErrStatus
		if st == abi.StatusConfig {
			sentinel = ErrConfig
		}
		ce := in.fail(abi.ExportInit, sentinel)
		ce.Status = st
		return ce
	}
	return nil
}

// fail builds a CallError with the plugin's message and output tail.
func (in *instance) fail(op string, err error) *CallError {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce
	}
	ce = &CallError{Digest: in.d, Op: op, Err: err, Stderr: in.tail.String()}
	if in.errSet {
		ce.Code, ce.Message = in.errCode, in.errMsg
	}
	return ce
}

// arm sets the interrupt global when timeout passes or ctx ends.
func (in *instance) arm(ctx context.Context, timeout time.Duration) {
	in.fired.Store(0)
	if in.timer == nil {
		in.timer = time.AfterFunc(timeout, func() { in.fire(firedDeadline) })
	} else {
		in.timer.Reset(timeout)
	}
	in.stopCtx = nil
	if ctx.Done() != nil {
		in.stopCtx = context.AfterFunc(ctx, func() { in.fire(firedContext) })
	}
}

func (in *instance) fire(why int32) {
	if in.fired.CompareAndSwap(0, why) {
		in.interrupt.Set(interruptRaised)
	}
}

// disarm stops the timers; it reports false when the interrupt fired or
// may still fire, and then the instance must be discarded.
func (in *instance) disarm() bool {
	clean := in.timer.Stop()
	if in.stopCtx != nil && !in.stopCtx() {
		clean = false
	}
	return clean && in.fired.Load() == 0
}

// classify turns a wazero call error into the package's errors: the
// caller's context, our deadline, or a trap.
func (in *instance) classify(cctx context.Context, err error) error {
	ctx := in.parent
	switch in.fired.Load() {
	case firedDeadline:
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case firedContext:
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	var exit *sys.ExitError
	if cctx.Err() != nil || (errors.As(err, &exit) && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled)) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if in.hostErr != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOutput, in.hostErr)
	}
	if in.interrupt != nil && in.interrupt.Get() == interruptDepth {
		return fmt.Errorf("%w: calls nested deeper than %d (frames of many locals count as several): %w", ErrTrap, MaxCallDepth, err)
	}
	return fmt.Errorf("%w: %w", ErrTrap, err)
}

// invoke calls fn with args under cctx and returns its i32 status.
func (in *instance) invoke(cctx context.Context, fn api.Function, args ...uint64) (abi.Status, error) {
	in.outSet, in.errSet, in.hostErr = false, false, nil
	copy(in.stack, args)
	if err := fn.CallWithStack(cctx, in.stack); err != nil {
		return 0, in.classify(cctx, err)
	}
	if in.hostErr != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidOutput, in.hostErr)
	}
	in.calls++
	return abi.Status(int32(uint32(in.stack[0]))), nil
}

// buffer returns a guest buffer of at least need bytes held in *ptr/*cap,
// replacing it (eddy_free, eddy_alloc) when it is too small.
func (in *instance) buffer(ctx context.Context, ptr, capacity *uint32, need uint32) (uint32, error) {
	if *ptr != 0 && *capacity >= need {
		return *ptr, nil
	}
	if *ptr != 0 {
		in.stack[0] = uint64(*ptr)
		if err := in.fnFree.CallWithStack(ctx, in.stack); err != nil {
			return 0, in.classify(ctx, err)
		}
		*ptr, *capacity = 0, 0
	}
	c := uint32(4 << 10)
	for c < need {
		if c >= 1<<31 {
			c = need
			break
		}
		c <<= 1
	}
	in.stack[0] = uint64(c)
	if err := in.fnAlloc.CallWithStack(ctx, in.stack); err != nil {
		return 0, in.classify(ctx, err)
	}
	p := uint32(in.stack[0])
	switch {
	case p == 0:
		return 0, fmt.Errorf("%w: eddy_alloc(%d) returned 0 (out of memory)", ErrInvalidOutput, c)
	case p%8 != 0:
		return 0, fmt.Errorf("%w: eddy_alloc(%d) returned %#x, not 8-byte aligned", ErrInvalidOutput, c, p)
	}
	if _, ok := in.mem.Read(p, c); !ok {
		return 0, fmt.Errorf("%w: eddy_alloc(%d) returned %#x, outside memory", ErrInvalidOutput, c, p)
	}
	*ptr, *capacity = p, c
	return p, nil
}

// writeInput encodes enc into the input arena and returns its address
// and size.
func (in *instance) writeInput(ctx context.Context, enc abi.Input) (uint32, uint32, error) {
	size := enc.Size()
	if size > abi.MaxBufferSize {
		return 0, 0, fmt.Errorf("input of %d bytes exceeds the %d-byte RBV1 limit", size, abi.MaxBufferSize)
	}
	p, err := in.buffer(ctx, &in.inPtr, &in.inCap, uint32(size))
	if err != nil {
		return 0, 0, err
	}
	view, ok := in.mem.Read(p, uint32(size))
	if !ok {
		return 0, 0, fmt.Errorf("%w: input arena at %#x outside memory", ErrInvalidOutput, p)
	}
	enc.EncodeInto(view)
	return p, uint32(size), nil
}

// close releases the instance. It is safe to call more than once.
func (in *instance) close(ctx context.Context) {
	if in.mod != nil {
		_ = in.mod.Close(ctx)
		in.mod = nil
	}
	in.t.byName.Delete(in.name)
}

// instantiateHostModule defines eddy_v1 in the tier's runtime. Each
// function finds its instance by the calling module's name.
func (t *tier) instantiateHostModule(ctx context.Context, e *Engine) error {
	lookup := func(m api.Module) *instance {
		v, ok := t.byName.Load(m.Name())
		if !ok {
			return nil
		}
		return v.(*instance)
	}
	read := func(m api.Module, ptr, n, limit uint32) ([]byte, bool) {
		if n > limit {
			n = limit
		}
		return m.Memory().Read(ptr, n)
	}
	i32 := api.ValueTypeI32
	b := t.rt.NewHostModuleBuilder(abi.ImportModule)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, stack []uint64) {
		in := lookup(m)
		if in == nil {
			return
		}
		ptr, n := uint32(stack[0]), uint32(stack[1])
		if _, ok := m.Memory().Read(ptr, n); !ok {
			in.hostErr = fmt.Errorf("set_output(%#x, %d) outside memory", ptr, n)
			return
		}
		in.outSet, in.outPtrSet, in.outLenSet = true, ptr, n
	}), []api.ValueType{i32, i32}, nil).Export(abi.ImportSetOutput)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, stack []uint64) {
		in := lookup(m)
		if in == nil {
			return
		}
		msg, ok := read(m, uint32(stack[1]), uint32(stack[2]), abi.MaxErrorMessageBytes)
		if !ok {
			in.hostErr = fmt.Errorf("set_error(%d, %#x, %d) outside memory", uint32(stack[0]), uint32(stack[1]), uint32(stack[2]))
			return
		}
		in.errSet, in.errCode, in.errMsg = true, uint32(stack[0]), string(msg)
	}), []api.ValueType{i32, i32, i32}, nil).Export(abi.ImportSetError)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, stack []uint64) {
		in := lookup(m)
		if in == nil {
			return
		}
		msg, ok := read(m, uint32(stack[1]), uint32(stack[2]), abi.MaxLogLineBytes)
		if !ok {
			in.hostErr = fmt.Errorf("log(%d, %#x, %d) outside memory", uint32(stack[0]), uint32(stack[1]), uint32(stack[2]))
			return
		}
		level := slog.LevelDebug
		switch abi.LogLevel(stack[0]) {
		case abi.LogInfo:
			level = slog.LevelInfo
		case abi.LogWarn:
			level = slog.LevelWarn
		case abi.LogError:
			level = slog.LevelError
		}
		in.sink.add(level, "plugin", in.name, string(msg))
	}), []api.ValueType{i32, i32, i32}, nil).Export(abi.ImportLog)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate %s host module: %w", abi.ImportModule, err)
	}
	return nil
}

// lineWriter receives an instance's stdout or stderr: every byte goes to
// the instance's tail ring, every line (cut at 1 KiB) to the module's log.
type lineWriter struct {
	in     *instance
	source string
	level  slog.Level
	line   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.in.tail.Write(p)
	for _, c := range p {
		if c == '\n' {
			w.flush()
			continue
		}
		if len(w.line) < abi.MaxLogLineBytes {
			w.line = append(w.line, c)
		}
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.line) > 0 {
		w.in.sink.add(w.level, w.source, w.in.name, string(w.line))
	}
	w.line = w.line[:0]
}

// tailRing keeps the last n bytes written.
type tailRing struct {
	buf  []byte
	next int
	full bool
}

func newTailRing(n int) *tailRing { return &tailRing{buf: make([]byte, n)} }

func (r *tailRing) Write(p []byte) {
	if len(p) >= len(r.buf) {
		copy(r.buf, p[len(p)-len(r.buf):])
		r.next, r.full = 0, true
		return
	}
	n := copy(r.buf[r.next:], p)
	if n < len(p) {
		copy(r.buf, p[n:])
		r.full = true
	}
	r.next = (r.next + len(p)) % len(r.buf)
	if r.next == 0 && len(p) > 0 {
		r.full = true
	}
}

func (r *tailRing) String() string {
	if !r.full {
		return string(r.buf[:r.next])
	}
	return string(r.buf[r.next:]) + string(r.buf[:r.next])
}
