package sandbox

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/eddybroker/eddy/plugins/host/internal/wasmgen"
)

// oneFunc is a module of one exported function f of type ty with body
// (and locals I32 locals), and a memory.
func oneFunc(ty wasmgen.FuncType, locals uint32, body []byte, start *uint32) []byte {
	return (&wasmgen.Module{
		Types:    []wasmgen.FuncType{ty},
		Funcs:    []wasmgen.Func{{I32Locals: locals, Body: body}},
		MemPages: 1,
		Start:    start,
		Exports:  []wasmgen.Export{{Name: "f", Kind: wasmgen.KindFunc, Index: 0}},
	}).Encode()
}

// TestRegisterRefusesCodeTheRewriteWouldMakeValid: the rewrite adds a
// local, a label around each body, types and an export; code that was
// invalid for naming one of them (a guest reaching the countdown local,
// or branching past the exit code, would run unguarded) is refused, as
// is any invalid module, by compiling the module's own bytes first. None
// panics or keeps the host busy.
func TestRegisterRefusesCodeTheRewriteWouldMakeValid(t *testing.T) {
	c := wasmgen.Const
	start := uint32(0)
	cases := []struct {
		name string
		wasm []byte
	}{
		// local 1 of 1: the countdown after the rewrite.
		{"local past the last", oneFunc(wasmgen.FuncType{}, 1, wasmgen.Cat(
			[]byte{wasmgen.OpLoop, wasmgen.BlockEmpty}, c(5), []byte{wasmgen.OpLocalSet, 1, wasmgen.OpBr, 0, wasmgen.OpEnd, wasmgen.OpEnd}), nil)},
		// br 1 at the top level: the function's label, past the wrapper.
		{"branch past the function", oneFunc(wasmgen.FuncType{}, 1, []byte{
			wasmgen.OpLoop, wasmgen.BlockEmpty, wasmgen.OpEnd, wasmgen.OpBr, 1, wasmgen.OpEnd}, nil)},
		// block type 2 of 2: the type appended for f0's wrapper.
		{"block type past the last", (&wasmgen.Module{
			Types: []wasmgen.FuncType{{Results: []byte{wasmgen.I32, wasmgen.I32}}, {Results: []byte{wasmgen.I32}}},
			Funcs: []wasmgen.Func{
				{Body: wasmgen.Cat([]byte{wasmgen.OpLoop, wasmgen.BlockEmpty, wasmgen.OpEnd}, c(1), c(2), []byte{wasmgen.OpEnd})},
				{TypeIdx: 1, Body: wasmgen.Cat([]byte{0x02, 0x02}, c(3), c(4), []byte{wasmgen.OpEnd, wasmgen.OpI32Add, wasmgen.OpEnd})},
			},
			MemPages: 1,
			Exports:  []wasmgen.Export{{Name: "g", Kind: wasmgen.KindFunc, Index: 1}},
		}).Encode()},
		// a start function with a parameter, which _initialize would take.
		{"start with parameters", oneFunc(wasmgen.FuncType{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}}, 0,
			[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpEnd}, &start)},
		{"call past the last function", oneFunc(wasmgen.FuncType{}, 0, []byte{
			wasmgen.OpLoop, wasmgen.BlockEmpty, wasmgen.OpCall, 99, wasmgen.OpEnd, wasmgen.OpEnd}, nil)},
		// a body of four bytes declaring 2^26 local groups
		{"local groups past the body", append([]byte("\x00asm\x01\x00\x00\x00"),
			1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 10, 6, 1, 4, 0x80, 0x80, 0x80, 0x20)},
	}
	e, err := New(Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			m, err := e.Register(context.Background(), tc.wasm)
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("register = %+v, %v; want ErrInvalidModule", m, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("refusing it took %v", d)
			}
			// The rewrite alone refuses what it cannot walk, without
			// panicking.
			if tc.name == "call past the last function" || tc.name == "local groups past the body" {
				if _, err := instrument(tc.wasm); !errors.Is(err, errInstrument) {
					t.Fatalf("instrument = %v, want a refusal", err)
				}
			}
		})
	}
}

// TestInstrumentMultiValueAndStart: the wrapper block type
// appended for a function with three results needs a two-byte s33 index
// (70 types before it), a return from a nested if leaves through the exit
// code, and the start function runs as _initialize; results equal the
// original's.
func TestInstrumentMultiValueAndStart(t *testing.T) {
	c := wasmgen.Const
	var types []wasmgen.FuncType
	for i := range 70 {
		types = append(types, wasmgen.FuncType{Params: slices.Repeat([]byte{wasmgen.I64}, i%5+1)})
	}
	i32 := []byte{wasmgen.I32}
	types = append(types, wasmgen.FuncType{Params: i32, Results: []byte{wasmgen.I32, wasmgen.I32, wasmgen.I32}}, // 70
		wasmgen.FuncType{Params: i32, Results: i32}, wasmgen.FuncType{}) // 71, 72
	// f0 (index 0 after no imports): three results, a loop and a call.
	f0 := wasmgen.Cat(
		[]byte{wasmgen.OpLoop, wasmgen.BlockEmpty},
		[]byte{wasmgen.OpLocalGet, 1}, c(1), []byte{wasmgen.OpI32Add, opLocalTee, 1, wasmgen.OpLocalGet, 0, opI32LtU, wasmgen.OpBrIf, 0, wasmgen.OpEnd},
		[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpCall, 1, wasmgen.OpLocalGet, 1},
		// return from a nested block when n is odd
		[]byte{0x02, wasmgen.BlockEmpty, wasmgen.OpLocalGet, 0}, c(1), []byte{wasmgen.OpI32And, wasmgen.OpIf, wasmgen.BlockEmpty},
		c(9), c(9), c(9), []byte{opReturn, wasmgen.OpEnd, wasmgen.OpEnd},
		c(5), []byte{wasmgen.OpEnd},
	)
	f1 := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 0}, c(2), []byte{opI32Mul, wasmgen.OpEnd})
	f2 := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 0, wasmgen.OpCall, 0, wasmgen.OpI32Add, wasmgen.OpI32Add, wasmgen.OpEnd})
	start := uint32(3)
	f3 := wasmgen.Cat(c(0), c(42), []byte{wasmgen.OpI32Store, 2, 0}, []byte{wasmgen.OpEnd})
	orig := (&wasmgen.Module{
		Types:    types,
		Funcs:    []wasmgen.Func{{TypeIdx: 70, I32Locals: 1, Body: f0}, {TypeIdx: 71, Body: f1}, {TypeIdx: 71, Body: f2}, {TypeIdx: 72, Body: f3}},
		MemPages: 1,
		Start:    &start,
		Exports:  []wasmgen.Export{{Name: "f0", Kind: wasmgen.KindFunc, Index: 0}, {Name: "f2", Kind: wasmgen.KindFunc, Index: 2}},
	}).Encode()
	inst, err := instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	a, b := instantiate(t, orig), instantiate(t, inst)
	if _, err := b.ExportedFunction("_initialize").Call(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"f0", "f2"} {
		for n := uint64(0); n < 10; n++ {
			want, err1 := a.ExportedFunction(fn).Call(context.Background(), n)
			got, err2 := b.ExportedFunction(fn).Call(context.Background(), n)
			if err1 != nil || err2 != nil || !slices.Equal(got, want) {
				t.Fatalf("%s(%d) = %v, %v; want %v, %v", fn, n, got, err2, want, err1)
			}
		}
	}
	ma, _ := a.Memory().ReadUint32Le(0)
	mb, _ := b.Memory().ReadUint32Le(0)
	if ma != mb {
		t.Fatalf("start: memory %d, want %d", mb, ma)
	}
	if d := b.ExportedGlobal(InterruptExport); d.Get() != 0 {
		t.Fatal(d.Get())
	}
}

// TestInstrumentCallIndirectAndImports: imports shift the function
// index space; calls to imports are not counted and do not disturb the
// local countdown; call_indirect to a counting function is counted
// exactly.
func TestInstrumentCallIndirectAndImports(t *testing.T) {
	c := wasmgen.Const
	i32 := []byte{wasmgen.I32}
	f1 := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 0}, c(3), []byte{opI32Mul}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpEnd})
	f2 := wasmgen.Cat(
		[]byte{wasmgen.OpLoop, wasmgen.BlockEmpty},
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpLocalGet, 1, wasmgen.OpLocalGet, 1}, c(1), []byte{wasmgen.OpI32And, 0x11, 0, 0, wasmgen.OpI32Add},
		[]byte{wasmgen.OpLocalGet, 1, wasmgen.OpCall, 0, wasmgen.OpI32Add, wasmgen.OpLocalSet, 2},
		[]byte{wasmgen.OpLocalGet, 1}, c(1), []byte{wasmgen.OpI32Add, opLocalTee, 1, wasmgen.OpLocalGet, 0, opI32LtU, wasmgen.OpBrIf, 0, wasmgen.OpEnd},
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpEnd},
	)
	f3 := wasmgen.Cat([]byte{wasmgen.OpLocalGet, 0, wasmgen.OpCall, 0}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpEnd})
	enc := (&wasmgen.Module{
		Types:    []wasmgen.FuncType{{Params: i32, Results: i32}},
		Imports:  []wasmgen.Import{{Module: "env", Name: "h", Kind: wasmgen.KindFunc}},
		Funcs:    []wasmgen.Func{{Body: f1}, {I32Locals: 2, Body: f2}, {Body: f3}},
		MemPages: 1,
		Exports:  []wasmgen.Export{{Name: "f2", Kind: wasmgen.KindFunc, Index: 2}},
	}).Encode()
	// splice a table [f1, f3] and its element segment
	var orig []byte
	r := reader{b: enc, i: 8}
	orig = append(orig, enc[:8]...)
	for r.i < len(enc) {
		st := r.i
		id := r.byte()
		n := int(r.u32())
		r.i += n
		if id == 10 {
			orig = append(orig, 9, 8, 1, 0x00, 0x41, 0x00, 0x0B, 2, 1, 3)
		}
		orig = append(orig, enc[st:r.i]...)
		if id == 3 {
			orig = append(orig, 4, 4, 1, 0x70, 0x00, 2)
		}
	}
	inst, err := instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mk := func(wasm []byte) api.Module {
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
		t.Cleanup(func() { rt.Close(ctx) })
		_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
			WithFunc(func(x uint32) uint32 { return x + 100 }).Export("h").Instantiate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		return mod
	}
	a, b := mk(orig), mk(inst)
	for n := uint64(0); n < 20; n++ {
		want, _ := a.ExportedFunction("f2").Call(ctx, n)
		got, err := b.ExportedFunction("f2").Call(ctx, n)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("f2(%d) = %v, %v; want %v", n, got, err, want)
		}
	}
	// f2(10) counts 1 + 10 + 5: the 64th call reaches 1,024.
	b = mk(inst)
	b.ExportedGlobal(InterruptExport).(api.MutableGlobal).Set(1)
	for i := range 64 {
		_, err := b.ExportedFunction("f2").Call(ctx, 10)
		if (err != nil) != (i == 63) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// FuzzInstrument: whatever module wazero accepts, the rewrite either
// refuses or turns into a module wazero accepts too, with the same
// exported functions; the rewriter never panics on any input.
func FuzzInstrument(f *testing.F) {
	f.Add(countingModule())
	f.Add(wasmgen.Plugin{Partition: wasmgen.Cat(wasmgen.Const(0), []byte{wasmgen.OpEnd})}.Encode())
	f.Add(oneFunc(wasmgen.FuncType{}, 1, wasmgen.Cat([]byte{wasmgen.OpLoop, wasmgen.BlockEmpty}, wasmgen.Const(5),
		[]byte{wasmgen.OpLocalSet, 0, wasmgen.OpBr, 0, wasmgen.OpEnd, wasmgen.OpEnd}), nil))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		inst, ierr := instrument(wasm)
		orig, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		defer orig.Close(ctx)
		if ierr != nil {
			return
		}
		cm, err := rt.CompileModule(ctx, inst)
		if err != nil {
			t.Fatalf("the original compiles, the rewrite does not: %v", err)
		}
		defer cm.Close(ctx)
		for name := range orig.ExportedFunctions() {
			if _, ok := cm.ExportedFunctions()[name]; !ok {
				t.Fatalf("export %s lost", name)
			}
		}
	})
}
