package sandbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/internal/wasmgen"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
)

// A start function runs (as _initialize, under the guard) before calls:
// it stores 42 at address 16, and the partitioner returns that value.
func TestStartFunctionRuns(t *testing.T) {
	e, _ := newEngine(t, nil)
	start := wasmgen.Cat(wasmgen.Const(16), wasmgen.Const(42), []byte{wasmgen.OpI32Store, 2, 0, wasmgen.OpEnd})
	part := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(16), []byte{wasmgen.OpI32Load, 2, 0, wasmgen.OpI32Store, 2, 0}, wasmgen.Const(1), []byte{wasmgen.OpEnd})
	m := register(t, e, wasmgen.Plugin{Start: start, Partition: part}.Encode())
	if m.Guard != sandbox.GuardInterrupt {
		t.Fatalf("guard %v", m.Guard)
	}
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	out, err := p.Partition(context.Background(), ok, batch(1, 100), nil)
	if err != nil || out[0] != 42 {
		t.Fatalf("partition = %v, %v; want 42 stored by the start function", out, err)
	}
	// An endless start function is stopped by the instantiation deadline.
	f, _ := newEngine(t, func(c *sandbox.Config) { c.InitTimeout = 100 * time.Millisecond })
	loop := wasmgen.Cat([]byte{wasmgen.OpLoop, wasmgen.BlockEmpty, wasmgen.OpBr, 0, wasmgen.OpEnd, wasmgen.OpEnd})
	if _, err := f.Register(context.Background(), wasmgen.Plugin{Start: loop, Partition: part}.Encode()); !errors.Is(err, sandbox.ErrTimeout) {
		t.Fatalf("register with an endless start function = %v, want ErrTimeout", err)
	}
}

// Code that names a global the module does not have is invalid, even
// though the rewrite adds globals at that index.
func TestInstrumentRefusesForeignGlobals(t *testing.T) {
	e, _ := newEngine(t, nil)
	// Global 0 is the allocator's; global 1 would be the injected interrupt flag.
	reset := wasmgen.Cat(wasmgen.Const(0), []byte{wasmgen.OpGlobalSet, 1}, wasmgen.Const(0), []byte{wasmgen.OpEnd})
	if _, err := e.Register(context.Background(), wasmgen.Plugin{Partition: reset}.Encode()); !errors.Is(err, sandbox.ErrInvalidModule) {
		t.Fatalf("register = %v, want ErrInvalidModule", err)
	}
}

func TestRecycleAfterMaxCalls(t *testing.T) {
	e, _ := newEngine(t, func(c *sandbox.Config) { c.MaxCallsPerInstance = 2 })
	m := register(t, e, wasmgen.Plugin{Partition: zeros}.Encode())
	p := pool(t, e, m, abi.KindPartitioner, "", sandbox.PoolOptions{})
	for range 5 {
		if _, err := p.Partition(context.Background(), ok, batch(2, 3), nil); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Status(); st.Counters.Recycles < 2 || st.Counters.Instantiations < 3 || st.Counters.Failures != 0 {
		t.Fatalf("counters = %+v", st.Counters)
	}
}

// FuzzRegister feeds arbitrary bytes (seeded with valid plugins) to
// registration: it may refuse them, never panic or hang.
func FuzzRegister(f *testing.F) {
	f.Add(wasmgen.Plugin{Partition: zeros}.Encode())
	f.Add(wasmgen.Plugin{Partition: spin, Start: []byte{wasmgen.OpEnd}}.Encode())
	e, err := sandbox.New(sandbox.Config{InitTimeout: 200 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		m, err := e.Register(context.Background(), wasm)
		if err == nil {
			_ = e.Remove(context.Background(), m.Digest)
		}
	})
}
