package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/internal/wasmgen"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// clock is a settable clock for breakers.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Tests share plugintest's compilation cache: compiling a Go guest takes
// seconds, more under the race detector.
var cacheDir = plugintest.CacheDir

// ok is the deadline of calls that are expected to succeed: generous,
// since CI runs the tests under the race detector on a loaded machine.
const ok = 20 * time.Second

func newEngine(t *testing.T, mod func(*sandbox.Config)) (*sandbox.Engine, *clock) {
	t.Helper()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	cfg := sandbox.Config{CacheDir: cacheDir, Now: c.Now, Instances: 2, InitTimeout: ok}
	if mod != nil {
		mod(&cfg)
	}
	e, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e, c
}

func register(t *testing.T, e *sandbox.Engine, wasm []byte) sandbox.Module {
	t.Helper()
	m, err := e.Register(context.Background(), wasm)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return m
}

func pool(t *testing.T, e *sandbox.Engine, m sandbox.Module, kind abi.Kind, cfg string, o sandbox.PoolOptions) *sandbox.Pool {
	t.Helper()
	p, err := e.Pool(context.Background(), m.Digest, kind, []byte(cfg), o)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	return p
}

func batch(n int, parts uint32) *abi.Encoder {
	var enc abi.Encoder
	enc.Reset(abi.Header{Stage: abi.StagePartition, Partition: abi.Unassigned, PartitionCount: parts, BaseOffset: -1})
	for i := range n {
		enc.Add(abi.Entry{Key: []byte{byte('a' + i%26)}, Value: []byte("v"), SourceIndex: uint32(i)})
	}
	return &enc
}

// zeros returns 0 for every record.
var zeros = wasmgen.Cat(
	[]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(0), wasmgen.RecordCount, wasmgen.Const(2),
	[]byte{wasmgen.OpI32Shl, 0xFC, 11, 0}, // memory.fill
	wasmgen.RecordCount, []byte{wasmgen.OpEnd},
)

var spin = wasmgen.Cat([]byte{wasmgen.OpLoop, wasmgen.BlockEmpty, wasmgen.OpBr, 0, wasmgen.OpEnd}, wasmgen.Const(0), []byte{wasmgen.OpEnd})

func TestRawPartitioner(t *testing.T) {
	e, _ := newEngine(t, nil)
	m := register(t, e, wasmgen.Plugin{Partition: zeros}.Encode())
	if m.Kinds != abi.KindPartitioner || m.ABIVersion != abi.CurrentVersion || m.Guard != sandbox.GuardInterrupt {
		t.Fatalf("module = %+v", m)
	}
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	out, err := p.Partition(context.Background(), ok, batch(5000, 3), nil)
	if err != nil || len(out) != 5000 || out[4999] != 0 {
		t.Fatalf("partition: %d results, %v", len(out), err)
	}
	if again, _ := e.Register(context.Background(), wasmgen.Plugin{Partition: zeros}.Encode()); again.Digest != m.Digest {
		t.Fatal("registering the same bytes twice gave another module")
	}
}

func TestRegistrationRefusals(t *testing.T) {
	e, _ := newEngine(t, func(c *sandbox.Config) { c.MaxModuleBytes = 1 << 20 })
	fn := func(mod, name string) wasmgen.Import {
		return wasmgen.Import{Module: mod, Name: name, TypeIdx: wasmgen.TypeIII_V}
	}
	cases := []struct {
		name string
		wasm []byte
		want error
		text string
	}{
		{"oversized", make([]byte, 1<<20+1), sandbox.ErrModuleTooLarge, "cap"},
		{"garbage", []byte("not wasm at all"), sandbox.ErrInvalidModule, "magic"},
		{"truncated", wasmgen.Plugin{Partition: zeros}.Encode()[:40], sandbox.ErrInvalidModule, ""},
		{"unknown import", wasmgen.Plugin{Partition: zeros, Imports: []wasmgen.Import{fn("env", "abort")}}.Encode(), sandbox.ErrForbiddenImport, "env.abort"},
		{"next major", wasmgen.Plugin{Partition: zeros, Imports: []wasmgen.Import{fn("eddy_v2", "log")}}.Encode(), sandbox.ErrForbiddenImport, "eddy_v2.log"},
		{"unknown ABI function", wasmgen.Plugin{Partition: zeros, Imports: []wasmgen.Import{fn("eddy_v1", "kv_get")}}.Encode(), sandbox.ErrForbiddenImport, "eddy_v1.kv_get"},
		{"mistyped import", wasmgen.Plugin{Partition: zeros, Imports: []wasmgen.Import{{Module: "eddy_v1", Name: "log", TypeIdx: wasmgen.TypeV_I}}}.Encode(), sandbox.ErrForbiddenImport, "type"},
		{"imported memory", wasmgen.Plugin{Partition: zeros, Imports: []wasmgen.Import{{Module: "env", Name: "memory", Kind: wasmgen.KindMemory, Desc: []byte{0, 1}}}}.Encode(), sandbox.ErrForbiddenImport, "memory"},
		{"no kind", wasmgen.Plugin{}.Encode(), sandbox.ErrMissingExport, "no plugin kind"},
		{"no alloc", wasmgen.Plugin{Partition: zeros, OmitAlloc: true}.Encode(), sandbox.ErrMissingExport, "eddy_alloc"},
		{"command", wasmgen.Plugin{Partition: zeros, ExportStart: true}.Encode(), sandbox.ErrMissingExport, "reactor"},
		{"abi 2.0", wasmgen.Plugin{Partition: zeros, Version: 2 << 16}.Encode(), sandbox.ErrABIVersion, "2.0"},
		{"abi 1.99", wasmgen.Plugin{Partition: zeros, Version: 1<<16 | 99}.Encode(), sandbox.ErrABIVersion, "1.99"},
		{"reserved export", wasmgen.Plugin{Partition: zeros, Exports: []wasmgen.Export{{Name: sandbox.InterruptExport, Kind: wasmgen.KindFunc, Index: 0}}}.Encode(), sandbox.ErrInvalidModule, "cannot be guarded: instrument: the module exports the reserved name eddy_interrupt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Register(context.Background(), c.wasm)
			if !errors.Is(err, c.want) {
				t.Fatalf("register = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Fatalf("error %q does not mention %q", err, c.text)
			}
		})
	}
	if n := len(e.Modules()); n != 0 {
		t.Fatalf("%d modules registered, want none", n)
	}
}

func TestInfiniteLoopIsStoppedAndHostStaysHealthy(t *testing.T) {
	for _, guard := range []sandbox.Guard{sandbox.GuardInterrupt, sandbox.GuardWazero} {
		t.Run(guard.String(), func(t *testing.T) {
			e, _ := newEngine(t, func(c *sandbox.Config) { c.Guard = guard })
			loop := register(t, e, wasmgen.Plugin{Partition: spin}.Encode())
			good := register(t, e, wasmgen.Plugin{Partition: zeros}.Encode())
			if loop.Guard != guard {
				t.Fatalf("guard %v, want %v", loop.Guard, guard)
			}
			p := pool(t, e, loop, abi.KindPartitioner, "", sandbox.PoolOptions{})
			start := time.Now()
			_, err := p.Partition(context.Background(), 50*time.Millisecond, batch(1, 3), nil)
			if !errors.Is(err, sandbox.ErrTimeout) {
				t.Fatalf("partition = %v, want ErrTimeout", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("the loop ran %v past a 50ms deadline", d)
			}
			st := p.Status()
			if st.Counters.Timeouts != 1 || st.Instances != 0 {
				t.Fatalf("after the timeout: %+v", st)
			}
			// The caller's context stops it too, without counting against the plugin.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if _, err := p.Partition(ctx, time.Hour, batch(1, 3), nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("partition with a cancelled context = %v", err)
			}
			if got := p.Status().Counters.Failures; got != 1 {
				t.Fatalf("failures = %d after a caller cancellation, want 1", got)
			}
			// Other plugins are unaffected.
			q := pool(t, e, good, abi.KindPartitioner, "", sandbox.PoolOptions{})
			if _, err := q.Partition(context.Background(), ok, batch(3, 3), nil); err != nil {
				t.Fatalf("a good plugin after the loop: %v", err)
			}
		})
	}
}

// fanout is an eddy_partition (function 3) without a loop that calls
// itself twice with its length argument less one: 2^len calls, no loop
// head, and a stack only len frames deep.
var fanout = wasmgen.Cat(
	[]byte{wasmgen.OpLocalGet, 1, wasmgen.OpIf, wasmgen.BlockEmpty},
	[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpLocalGet, 1}, wasmgen.Const(1), []byte{wasmgen.OpI32Sub, wasmgen.OpLocalGet, 2, wasmgen.OpCall, 3, wasmgen.OpDrop},
	[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpLocalGet, 1}, wasmgen.Const(1), []byte{wasmgen.OpI32Sub, wasmgen.OpLocalGet, 2, wasmgen.OpCall, 3, wasmgen.OpDrop},
	[]byte{wasmgen.OpEnd}, wasmgen.Const(0), []byte{wasmgen.OpEnd},
)

// TestCallTreeWithoutLoopsIsStopped: a guest that never passes a loop
// head but makes an exponential number of calls is stopped at its
// deadline like a loop, and garbage collections during the call are not
// held up by it (a guest that never left compiled code would stall them,
// and with them the whole process).
func TestCallTreeWithoutLoopsIsStopped(t *testing.T) {
	e, _ := newEngine(t, nil)
	m := register(t, e, wasmgen.Plugin{Partition: fanout}.Encode())
	if m.Guard != sandbox.GuardInterrupt {
		t.Fatalf("guard %v, want %v", m.Guard, sandbox.GuardInterrupt)
	}
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.Partition(context.Background(), 200*time.Millisecond, batch(1, 3), nil)
		done <- err
	}()
	gcs := 0
	for {
		select {
		case err := <-done:
			if !errors.Is(err, sandbox.ErrTimeout) {
				t.Fatalf("partition = %v, want ErrTimeout", err)
			}
			if gcs == 0 {
				t.Fatal("no garbage collection completed while the guest ran")
			}
			if st := p.Status(); st.Counters.Timeouts != 1 || st.Instances != 0 {
				t.Fatalf("after the timeout: %+v", st)
			}
			return
		default:
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("the call tree ran 20s past a 200ms deadline")
		}
		runtime.GC() // returns only if the guest lets the world stop
		gcs++
	}
}

// deep is an eddy_partition (function 3) that recurses two billion calls
// deep: without a bound, wazero grows the call's stack to hundreds of
// megabytes (outside the memory cap) before it overflows.
var deep = wasmgen.Cat(
	[]byte{wasmgen.OpLocalGet, 1}, wasmgen.Const(1000000), []byte{0x49, wasmgen.OpIf, wasmgen.BlockEmpty}, // len < 1e6:
	[]byte{wasmgen.OpLocalGet, 0}, wasmgen.Const(2000000000), []byte{wasmgen.OpLocalGet, 2, wasmgen.OpCall, 3, 0x0F, wasmgen.OpEnd}, // return f(in, 2e9, out)
	[]byte{wasmgen.OpLocalGet, 1, 0x45, wasmgen.OpIf, 0x7F}, wasmgen.Const(0), []byte{0x05},
	[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpLocalGet, 1}, wasmgen.Const(1), []byte{wasmgen.OpI32Sub, wasmgen.OpLocalGet, 2, wasmgen.OpCall, 3},
	wasmgen.Const(1), []byte{wasmgen.OpI32Add, wasmgen.OpEnd, wasmgen.OpEnd},
)

// TestDeepRecursionIsStopped: a guest nesting calls past MaxCallDepth
// traps, naming why, long before its stack could grow large; the broken
// instance is discarded and other plugins keep working.
func TestDeepRecursionIsStopped(t *testing.T) {
	e, _ := newEngine(t, nil)
	m := register(t, e, wasmgen.Plugin{Partition: deep}.Encode())
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	_, err := p.Partition(context.Background(), 10*time.Second, batch(1, 3), nil)
	if !errors.Is(err, sandbox.ErrTrap) || !strings.Contains(err.Error(), fmt.Sprintf("calls nested deeper than %d", sandbox.MaxCallDepth)) {
		t.Fatalf("partition = %v, want a trap naming the call depth", err)
	}
	if st := p.Status(); st.Counters.Failures != 1 || st.Instances != 0 {
		t.Fatalf("after the trap: %+v", st)
	}
	good := register(t, e, wasmgen.Plugin{Partition: zeros}.Encode())
	q := pool(t, e, good, abi.KindPartitioner, "", sandbox.PoolOptions{})
	if _, err := q.Partition(context.Background(), ok, batch(3, 3), nil); err != nil {
		t.Fatalf("a good plugin after the trap: %v", err)
	}
}

func TestTrustedRunsOriginalCode(t *testing.T) {
	e, _ := newEngine(t, nil)
	m := register(t, e, wasmgen.Plugin{Partition: zeros}.Encode())
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{Trusted: true})
	if !p.Status().Trusted {
		t.Fatal("pool not trusted")
	}
	if out, err := p.Partition(context.Background(), ok, batch(10, 3), nil); err != nil || len(out) != 10 {
		t.Fatalf("trusted partition: %v", err)
	}
}

func TestBadOutputs(t *testing.T) {
	e, _ := newEngine(t, nil)
	enc := func() *abi.Encoder {
		var x abi.Encoder
		x.Reset(abi.Header{Stage: abi.StageProduce})
		x.Add(abi.Entry{Key: []byte("k"), Value: []byte("v")})
		b, _ := x.Encode()
		_ = b
		return &x
	}
	outBuf := func(mutate func([]byte)) []byte {
		b, _ := enc().Encode()
		mutate(b)
		return b
	}
	// set_output(0x100, len) after writing decision 2 at out_ptr.
	transform := func(data []byte) []byte {
		return wasmgen.Cat(
			[]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(2), []byte{wasmgen.OpI32Store8, 0, 0},
			wasmgen.Const(0x100), wasmgen.Const(int32(len(data))), []byte{wasmgen.OpCall, 0},
			wasmgen.Const(1), []byte{wasmgen.OpEnd},
		)
	}
	setOutput := []wasmgen.Import{{Module: "eddy_v1", Name: "set_output", TypeIdx: wasmgen.TypeII_V}}
	valid, _ := enc().Encode()
	cases := map[string][]byte{
		"key past the end": outBuf(func(b []byte) { b[abi.HeaderSize+20] = 0xF0 }),
		"bad magic":        outBuf(func(b []byte) { b[0] = 'X' }),
		"source index":     outBuf(func(b []byte) { b[abi.HeaderSize+40] = 5 }),
		"route":            outBuf(func(b []byte) { b[abi.HeaderSize+44] = 3 }),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			m := register(t, e, wasmgen.Plugin{Imports: setOutput, Transform: transform(data), Data: []wasmgen.Data{{Offset: 0x100, Bytes: data}}}.Encode())
			p := pool(t, e, m, abi.KindTransform, "", sandbox.PoolOptions{})
			err := p.Transform(context.Background(), ok, enc(), sandbox.OutputLimits{Routes: 1}, func(sandbox.TransformOutput) error { return nil })
			if !errors.Is(err, sandbox.ErrInvalidOutput) {
				t.Fatalf("transform = %v, want ErrInvalidOutput", err)
			}
			if p.Status().Counters.InvalidOutputs != 1 {
				t.Fatalf("status = %+v", p.Status())
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		m := register(t, e, wasmgen.Plugin{Imports: setOutput, Transform: transform(valid), Data: []wasmgen.Data{{Offset: 0x100, Bytes: valid}}}.Encode())
		p := pool(t, e, m, abi.KindTransform, "", sandbox.PoolOptions{})
		var got string
		err := p.Transform(context.Background(), ok, enc(), sandbox.OutputLimits{}, func(o sandbox.TransformOutput) error {
			got = string(o.Output.Record(0).Value())
			return nil
		})
		if err != nil || got != "v" {
			t.Fatalf("transform = %q, %v", got, err)
		}
	})
	t.Run("set_output outside memory", func(t *testing.T) {
		body := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(2), []byte{wasmgen.OpI32Store8, 0, 0},
			wasmgen.Const(-256), wasmgen.Const(100), []byte{wasmgen.OpCall, 0}, wasmgen.Const(1), []byte{wasmgen.OpEnd})
		m := register(t, e, wasmgen.Plugin{Imports: setOutput, Transform: body}.Encode())
		p := pool(t, e, m, abi.KindTransform, "", sandbox.PoolOptions{})
		err := p.Transform(context.Background(), ok, enc(), sandbox.OutputLimits{}, func(sandbox.TransformOutput) error { return nil })
		if !errors.Is(err, sandbox.ErrInvalidOutput) {
			t.Fatalf("transform = %v, want ErrInvalidOutput", err)
		}
	})
	t.Run("replaced without output", func(t *testing.T) {
		body := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(2), []byte{wasmgen.OpI32Store8, 0, 0}, wasmgen.Const(1), []byte{wasmgen.OpEnd})
		m := register(t, e, wasmgen.Plugin{Transform: body}.Encode())
		p := pool(t, e, m, abi.KindTransform, "", sandbox.PoolOptions{})
		err := p.Transform(context.Background(), ok, enc(), sandbox.OutputLimits{}, func(sandbox.TransformOutput) error { return nil })
		if !errors.Is(err, sandbox.ErrInvalidOutput) {
			t.Fatalf("transform = %v, want ErrInvalidOutput", err)
		}
	})
	t.Run("partition out of range", func(t *testing.T) {
		body := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(99), []byte{wasmgen.OpI32Store, 2, 0}, wasmgen.Const(1), []byte{wasmgen.OpEnd})
		m := register(t, e, wasmgen.Plugin{Partition: body}.Encode())
		p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
		_, err := p.Partition(context.Background(), ok, batch(1, 12), nil)
		if !errors.Is(err, sandbox.ErrInvalidOutput) || !strings.Contains(err.Error(), "partition 99") {
			t.Fatalf("partition = %v, want ErrInvalidOutput naming partition 99", err)
		}
	})
	t.Run("wrong count", func(t *testing.T) {
		body := wasmgen.Cat(wasmgen.Const(7), []byte{wasmgen.OpEnd})
		m := register(t, e, wasmgen.Plugin{Partition: body}.Encode())
		p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
		if _, err := p.Partition(context.Background(), ok, batch(1, 12), nil); !errors.Is(err, sandbox.ErrInvalidOutput) {
			t.Fatalf("partition = %v, want ErrInvalidOutput", err)
		}
	})
	t.Run("trap", func(t *testing.T) {
		body := wasmgen.Cat(wasmgen.Const(-1), []byte{wasmgen.OpI32Load, 2, 0, wasmgen.OpEnd})
		m := register(t, e, wasmgen.Plugin{Partition: body}.Encode())
		p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
		if _, err := p.Partition(context.Background(), ok, batch(1, 12), nil); !errors.Is(err, sandbox.ErrTrap) {
			t.Fatalf("partition = %v, want ErrTrap", err)
		}
	})
}

func TestMemoryBomb(t *testing.T) {
	e, _ := newEngine(t, func(c *sandbox.Config) { c.MemoryLimitBytes = 4 << 20 })
	// Grow memory one page at a time until memory.grow fails, then return ERR_NOMEM.
	bomb := wasmgen.Cat(
		[]byte{wasmgen.OpLoop, wasmgen.BlockEmpty}, wasmgen.Const(1), []byte{wasmgen.OpMemoryGrow, 0}, wasmgen.Const(-1),
		[]byte{wasmgen.OpI32Ne, wasmgen.OpBrIf, 0, wasmgen.OpEnd}, wasmgen.Const(int32(abi.StatusNoMem)), []byte{wasmgen.OpEnd})
	m := register(t, e, wasmgen.Plugin{Partition: bomb}.Encode())
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	_, err := p.Partition(context.Background(), ok, batch(1, 3), nil)
	var ce *sandbox.CallError
	if !errors.As(err, &ce) || ce.Status != abi.StatusNoMem {
		t.Fatalf("partition = %v, want ERR_NOMEM", err)
	}
	// A binding may lower the cap further; above the engine's runtime
	// limit is a separate tier, also capped.
	q := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{MemoryLimitBytes: 1 << 20})
	if q.Status().MemoryLimitBytes != 1<<20 {
		t.Fatalf("memory cap %d", q.Status().MemoryLimitBytes)
	}
	if _, err := q.Partition(context.Background(), ok, batch(1, 3), nil); !errors.As(err, &ce) || ce.Status != abi.StatusNoMem {
		t.Fatalf("partition = %v, want ERR_NOMEM", err)
	}
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	e, clk := newEngine(t, func(c *sandbox.Config) {
		c.Breaker = sandbox.BreakerConfig{MaxFailures: 3, Window: time.Minute, MinBackoff: time.Second, MaxBackoff: 4 * time.Second}
	})
	// Fails (traps) when the first record's key is "x".
	body := wasmgen.Cat(
		[]byte{wasmgen.OpLocalGet, 0}, []byte{wasmgen.OpI32Load, 2, 64 + 16}, // key_off of record 0
		[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpI32Add, 0x2D, 0, 0}, // i32.load8_u
		wasmgen.Const('x'), []byte{0x46, wasmgen.OpIf, wasmgen.BlockEmpty, wasmgen.OpUnreachable, wasmgen.OpEnd}, // i32.eq
		zeros)
	m := register(t, e, wasmgen.Plugin{Partition: body}.Encode())
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	call := func(key string) error {
		var enc abi.Encoder
		enc.Reset(abi.Header{Stage: abi.StagePartition, PartitionCount: 3})
		enc.Add(abi.Entry{Key: []byte(key)})
		_, err := p.Partition(context.Background(), ok, &enc, nil)
		return err
	}
	for i := range 3 {
		if err := call("x"); !errors.Is(err, sandbox.ErrTrap) {
			t.Fatalf("call %d = %v, want a trap", i, err)
		}
	}
	st, _ := e.Status(m.Digest)
	if st.State != sandbox.Degraded || st.Counters.Failures != 3 || st.LastError == "" {
		t.Fatalf("after 3 failures: %+v", st)
	}
	if err := call("ok"); !errors.Is(err, sandbox.ErrCircuitOpen) {
		t.Fatalf("call while open = %v, want ErrCircuitOpen", err)
	}
	// After the backoff one trial goes through; it fails, so the backoff doubles.
	clk.Add(time.Second)
	if err := call("x"); !errors.Is(err, sandbox.ErrTrap) {
		t.Fatalf("trial = %v", err)
	}
	if ps := p.Status(); ps.State != sandbox.Degraded || ps.Backoff != 2*time.Second {
		t.Fatalf("after a failed trial: %+v", ps)
	}
	clk.Add(time.Second)
	if err := call("ok"); !errors.Is(err, sandbox.ErrCircuitOpen) {
		t.Fatalf("call inside the doubled backoff = %v", err)
	}
	clk.Add(time.Second)
	if err := call("ok"); err != nil {
		t.Fatalf("successful trial: %v", err)
	}
	if st, _ := e.Status(m.Digest); st.State != sandbox.Healthy || st.Counters.BreakerRejections != 2 {
		t.Fatalf("after recovery: %+v", st)
	}
	// Failures spread beyond the window do not open it.
	for range 5 {
		_ = call("x")
		clk.Add(40 * time.Second)
		if err := call("ok"); err != nil {
			t.Fatalf("spread failures opened the circuit: %v", err)
		}
	}
}

func TestInitStatusAndRetry(t *testing.T) {
	e, _ := newEngine(t, nil)
	refuse := wasmgen.Cat(wasmgen.Const(int32(abi.StatusConfig)), []byte{wasmgen.OpEnd})
	m := register(t, e, wasmgen.Plugin{Partition: zeros, Init: refuse}.Encode())
	if _, err := e.Pool(context.Background(), m.Digest, abi.KindPartitioner, []byte("x"), sandbox.PoolOptions{}); !errors.Is(err, sandbox.ErrConfig) {
		t.Fatalf("pool with a refused config = %v, want ErrConfig", err)
	}
	if _, err := e.Pool(context.Background(), m.Digest, abi.KindTransform, nil, sandbox.PoolOptions{}); !errors.Is(err, sandbox.ErrKind) {
		t.Fatalf("transform pool of a partitioner = %v, want ErrKind", err)
	}
	retry := wasmgen.Cat(wasmgen.Const(int32(abi.StatusRetry)), []byte{wasmgen.OpEnd})
	r := register(t, e, wasmgen.Plugin{Partition: retry}.Encode())
	p := pool(t, e, r, abi.KindPartitioner, "", sandbox.PoolOptions{})
	_, err := p.Partition(context.Background(), ok, batch(1, 3), nil)
	var ce *sandbox.CallError
	if !errors.As(err, &ce) || ce.Status != abi.StatusRetry || !errors.Is(err, sandbox.ErrStatus) {
		t.Fatalf("partition = %v, want ERR_RETRY", err)
	}
	// The first instance, the retry's fresh one, each closed after failing.
	if st := p.Status(); st.Counters.Instantiations != 2 || st.Counters.Failures != 2 || st.Instances != 0 {
		t.Fatalf("after a retried failure: %+v", st.Counters)
	}
}

func TestRemove(t *testing.T) {
	e, _ := newEngine(t, nil)
	m := register(t, e, wasmgen.Plugin{Partition: zeros}.Encode())
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	if err := e.Remove(context.Background(), m.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Partition(context.Background(), ok, batch(1, 3), nil); !errors.Is(err, sandbox.ErrUnknownModule) {
		t.Fatalf("call after remove = %v", err)
	}
	if _, ok := e.Module(m.Digest); ok {
		t.Fatal("module still listed")
	}
	if err := e.Remove(context.Background(), m.Digest); !errors.Is(err, sandbox.ErrUnknownModule) {
		t.Fatalf("second remove = %v", err)
	}
	d, err := sandbox.ParseDigest(m.Digest.String())
	if err != nil || d != m.Digest {
		t.Fatalf("ParseDigest round trip: %v", err)
	}
}

// TestGoGuestMisbehaviour runs a real Go guest that panics, loops, runs
// out of memory, fails, asks for a retry and floods its logs.
func TestGoGuestMisbehaviour(t *testing.T) {
	wasmPath := plugintest.BuildGo(t, "../testdata/badplugin")
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newEngine(t, func(c *sandbox.Config) {
		c.MemoryLimitBytes = 24 << 20
		c.LogLinesPerSecond = 10
	})
	m := register(t, e, wasm)
	if m.Kinds != abi.KindPartitioner|abi.KindTransform|abi.KindCleanup || m.Guard != sandbox.GuardInterrupt {
		t.Fatalf("module = kinds %v guard %v", m.Kinds, m.Guard)
	}
	call := func(mode string, timeout time.Duration) (*sandbox.Pool, error) {
		p := pool(t, e, m, abi.KindPartitioner, mode, sandbox.PoolOptions{})
		_, err := p.Partition(context.Background(), timeout, batch(2, 3), nil)
		return p, err
	}
	if _, err := call("ok", ok); err != nil {
		t.Fatalf("ok: %v", err)
	}
	var ce *sandbox.CallError
	if _, err := call("panic", ok); !errors.As(err, &ce) || ce.Status != abi.StatusPlugin || !strings.Contains(ce.Message, "plugin bug") {
		t.Fatalf("panic = %v, want ERR_PLUGIN with the panic message", err)
	}
	if _, err := call("error", ok); !errors.As(err, &ce) || !strings.Contains(ce.Message, "cannot place record") {
		t.Fatalf("error = %v", err)
	}
	// Collections run while the guest spins: the guard must let the
	// garbage collector stop the world, or the process would stall.
	stop := make(chan struct{})
	var gcs sync.WaitGroup
	gcs.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	})
	start := time.Now()
	_, err = call("loop", 100*time.Millisecond)
	close(stop)
	gcs.Wait()
	if !errors.Is(err, sandbox.ErrTimeout) {
		t.Fatalf("loop = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a Go loop ran %v past its 100ms deadline", d)
	}
	p, err := call("oom", ok)
	if !errors.Is(err, sandbox.ErrTrap) || !strings.Contains(err.Error(), "fatal error: out of memory") {
		t.Fatalf("oom = %v, want a trap with the runtime's message", err)
	}
	if p.Status().Instances != 0 {
		t.Fatal("the instance that ran out of memory was kept")
	}
	if _, err := e.Pool(context.Background(), m.Digest, abi.KindPartitioner, []byte("badinit"), sandbox.PoolOptions{}); !errors.Is(err, sandbox.ErrConfig) || !strings.Contains(err.Error(), "mode badinit") {
		t.Fatalf("badinit = %v, want ErrConfig", err)
	}
	if _, err := call("retry", ok); !errors.As(err, &ce) || ce.Status != abi.StatusRetry {
		t.Fatalf("retry = %v", err)
	}
	if _, err := call("noisy", ok); err != nil {
		t.Fatalf("noisy: %v", err)
	}
	st, _ := e.Status(m.Digest)
	logs, _ := e.Logs(m.Digest)
	if st.LogsDropped == 0 || len(logs) == 0 || len(logs) > 20 {
		t.Fatalf("log capture: %d lines kept, %d dropped; want a rate-limited few", len(logs), st.LogsDropped)
	}
	// The good configuration still works after all that.
	if _, err := call("ok", ok); err != nil {
		t.Fatalf("ok after the failures: %v", err)
	}
}

func TestInstrumentedGoModule(t *testing.T) {
	wasm, err := os.ReadFile(plugintest.BuildGo(t, "../../../examples/plugins/murmur2"))
	if err != nil {
		t.Fatal(err)
	}
	// The same answers from the instrumented (guarded), the original
	// (trusted) and the wazero-guarded code.
	e, _ := newEngine(t, nil)
	w, _ := newEngine(t, func(c *sandbox.Config) { c.Guard = sandbox.GuardWazero })
	m := register(t, e, wasm)
	mw := register(t, w, wasm)
	enc := batch(300, 7)
	var results [][]int32
	for _, p := range []*sandbox.Pool{
		pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{}),
		pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{Trusted: true}),
		pool(t, w, mw, abi.KindPartitioner, "", sandbox.PoolOptions{}),
	} {
		out, err := p.Partition(context.Background(), ok, enc, nil)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, out)
	}
	for i := 1; i < len(results); i++ {
		for j := range results[0] {
			if results[i][j] != results[0][j] {
				t.Fatalf("variant %d record %d: partition %d, guarded code says %d", i, j, results[i][j], results[0][j])
			}
		}
	}
	for j, k := range []byte("ab") {
		if want := abi.KafkaPartition([]byte{k}, 7); results[0][j] != want {
			t.Fatalf("record %d: %d, want %d", j, results[0][j], want)
		}
	}
	if !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		t.Fatal("not wasm")
	}
}
