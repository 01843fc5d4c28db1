package sandbox

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/eddybroker/eddy/plugins/host/internal/wasmgen"
)

// Opcodes beyond wasmgen's.
const (
	opElse     = 0x05
	opReturn   = 0x0F
	opBrTable  = 0x0E
	opLocalTee = 0x22
	opI32Eqz   = 0x45
	opI32LtU   = 0x49
	opI32GtS   = 0x4A
	opI32Mul   = 0x6C
	blockI32   = 0x7F
)

// countingModule has a function of each kind the rewriter tells apart,
// and control flow that leaves a function in each way it can:
//
//	0 leaf(x) = 3x+1                       no loop, no call
//	1 sumTo(n) = Σ leaf(i), i < n          a loop calling a leaf; returns from inside the loop past 100,000
//	2 fan(n) = fan(n-1)+fan(n-1)+1         calls, no loop: 2^(n+1)-1 entries
//	3 mix(n)                               a loop calling both, leaving by br_if, br_table and end
//	4 pair(n) = (n, Σ i, i < n)            two results, a loop
//	5 usePair(n) = a*1000+b of pair(n)     calls a function with two results
//	6 down(n) = down(n-1)+1                recursion n+1 deep
func countingModule() []byte {
	c := wasmgen.Const
	cat := wasmgen.Cat
	leaf := cat([]byte{wasmgen.OpLocalGet, 0}, c(3), []byte{opI32Mul}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpEnd})
	sumTo := cat(
		[]byte{wasmgen.OpLoop, wasmgen.BlockEmpty},
		[]byte{wasmgen.OpLocalGet, 1, wasmgen.OpLocalGet, 0, opI32LtU, wasmgen.OpIf, wasmgen.BlockEmpty},
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpLocalGet, 1, wasmgen.OpCall, 0, wasmgen.OpI32Add, wasmgen.OpLocalSet, 2},
		[]byte{wasmgen.OpLocalGet, 1}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpLocalSet, 1},
		[]byte{wasmgen.OpLocalGet, 2}, c(100000), []byte{opI32GtS, wasmgen.OpIf, wasmgen.BlockEmpty, wasmgen.OpLocalGet, 2, opReturn, wasmgen.OpEnd},
		[]byte{wasmgen.OpBr, 1, wasmgen.OpEnd, wasmgen.OpEnd},
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpEnd},
	)
	fan := cat(
		[]byte{wasmgen.OpLocalGet, 0, opI32Eqz, wasmgen.OpIf, blockI32}, c(1), []byte{opElse},
		[]byte{wasmgen.OpLocalGet, 0}, c(1), []byte{wasmgen.OpI32Sub, wasmgen.OpCall, 2},
		[]byte{wasmgen.OpLocalGet, 0}, c(1), []byte{wasmgen.OpI32Sub, wasmgen.OpCall, 2},
		[]byte{wasmgen.OpI32Add}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpEnd, wasmgen.OpEnd},
	)
	mix := cat(
		// n > 50: return 7 by a br_if to the function's label.
		c(7), []byte{wasmgen.OpLocalGet, 0}, c(50), []byte{wasmgen.OpI32GtU, wasmgen.OpBrIf, 0, wasmgen.OpDrop},
		[]byte{0x02, blockI32, wasmgen.OpLoop, wasmgen.BlockEmpty},
		// acc += sumTo(i) + fan(i & 3)
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpLocalGet, 1, wasmgen.OpCall, 1, wasmgen.OpI32Add},
		[]byte{wasmgen.OpLocalGet, 1}, c(3), []byte{wasmgen.OpI32And, wasmgen.OpCall, 2, wasmgen.OpI32Add, wasmgen.OpLocalSet, 2},
		// while ++i < n
		[]byte{wasmgen.OpLocalGet, 1}, c(1), []byte{wasmgen.OpI32Add, opLocalTee, 1, wasmgen.OpLocalGet, 0, opI32LtU, wasmgen.OpBrIf, 0},
		// then acc to the block (n even: plus 1,000) or out of the function (n odd)
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpLocalGet, 0}, c(1), []byte{wasmgen.OpI32And, opBrTable, 2, 1, 2, 2},
		[]byte{wasmgen.OpEnd}, c(-1), []byte{wasmgen.OpEnd}, c(1000), []byte{wasmgen.OpI32Add, wasmgen.OpEnd},
	)
	pair := cat(
		[]byte{wasmgen.OpLoop, wasmgen.BlockEmpty, wasmgen.OpLocalGet, 1, wasmgen.OpLocalGet, 0, opI32LtU, wasmgen.OpIf, wasmgen.BlockEmpty},
		[]byte{wasmgen.OpLocalGet, 2, wasmgen.OpLocalGet, 1, wasmgen.OpI32Add, wasmgen.OpLocalSet, 2},
		[]byte{wasmgen.OpLocalGet, 1}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpLocalSet, 1, wasmgen.OpBr, 1, wasmgen.OpEnd, wasmgen.OpEnd},
		[]byte{wasmgen.OpLocalGet, 0, wasmgen.OpLocalGet, 2, wasmgen.OpEnd},
	)
	usePair := cat([]byte{wasmgen.OpLocalGet, 0, wasmgen.OpCall, 4, wasmgen.OpLocalSet, 1}, c(1000), []byte{opI32Mul, wasmgen.OpLocalGet, 1, wasmgen.OpI32Add, wasmgen.OpEnd})
	down := cat(
		[]byte{wasmgen.OpLocalGet, 0, opI32Eqz, wasmgen.OpIf, blockI32}, c(0), []byte{opElse},
		[]byte{wasmgen.OpLocalGet, 0}, c(1), []byte{wasmgen.OpI32Sub, wasmgen.OpCall, 6}, c(1), []byte{wasmgen.OpI32Add, wasmgen.OpEnd, wasmgen.OpEnd},
	)
	i32 := []byte{wasmgen.I32}
	m := wasmgen.Module{
		Types: []wasmgen.FuncType{{Params: i32, Results: i32}, {Params: i32, Results: []byte{wasmgen.I32, wasmgen.I32}}},
		Funcs: []wasmgen.Func{{Body: leaf}, {I32Locals: 2, Body: sumTo}, {Body: fan}, {I32Locals: 2, Body: mix},
			{TypeIdx: 1, I32Locals: 2, Body: pair}, {I32Locals: 1, Body: usePair}, {Body: down}},
		MemPages: 1,
	}
	for i, name := range []string{"leaf", "sumTo", "fan", "mix", "pair", "usePair", "down"} {
		m.Exports = append(m.Exports, wasmgen.Export{Name: name, Kind: wasmgen.KindFunc, Index: uint32(i)})
	}
	return m.Encode()
}

func instantiate(t *testing.T, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

// TestInstrumentedCodeComputesTheSame: the rewrite changes no result.
func TestInstrumentedCodeComputesTheSame(t *testing.T) {
	orig := countingModule()
	inst, err := instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	a, b := instantiate(t, orig), instantiate(t, inst)
	for _, fn := range []string{"leaf", "sumTo", "fan", "mix", "pair", "usePair", "down"} {
		for n := uint64(0); n <= 60; n++ {
			if fn == "fan" && n > 12 {
				break
			}
			want, err := a.ExportedFunction(fn).Call(context.Background(), n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := b.ExportedFunction(fn).Call(context.Background(), n)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("%s(%d) = %v, %v; the original gives %v", fn, n, got, err, want)
			}
		}
	}
}

// TestCallDepthIsBounded: calls into functions that make calls nest up
// to MaxCallDepth; one more traps, with the interrupt global saying why,
// where the original module would grow its stack far beyond (wazero
// allows hundreds of megabytes).
func TestCallDepthIsBounded(t *testing.T) {
	inst, err := instrument(countingModule())
	if err != nil {
		t.Fatal(err)
	}
	mod := instantiate(t, inst)
	// down(n) is n+1 activations deep; repeated calls leave no depth behind.
	for range 3 {
		got, err := mod.ExportedFunction("down").Call(context.Background(), MaxCallDepth-1)
		if err != nil || got[0] != MaxCallDepth-1 {
			t.Fatalf("down(%d) = %v, %v", MaxCallDepth-1, got, err)
		}
	}
	if _, err := mod.ExportedFunction("down").Call(context.Background(), MaxCallDepth); err == nil {
		t.Fatalf("down(%d) nested %d calls without a trap", MaxCallDepth, MaxCallDepth+1)
	}
	if v := mod.ExportedGlobal(InterruptExport).Get(); v != interruptDepth {
		t.Fatalf("interrupt global %d after the trap, want %d", v, interruptDepth)
	}
	orig := instantiate(t, countingModule())
	if _, err := orig.ExportedFunction("down").Call(context.Background(), 4*MaxCallDepth); err != nil {
		t.Fatalf("the original module: %v", err)
	}
}

// TestCountdownIsSharedAcrossCalls: with the interrupt flag raised, a
// call traps exactly when the guest's 1,024th count (loop iteration or
// entry into a function that calls) falls within it, however the counts
// are spread over calls, recursion and separate calls from the host.
func TestCountdownIsSharedAcrossCalls(t *testing.T) {
	inst, err := instrument(countingModule())
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		fn   string
		n    uint64
		trap bool
	}
	for _, c := range []struct {
		name  string
		calls []call
	}{
		// sumTo(n), n <= 250, counts its entry (it calls) and n+1 loop
		// passes: 252 for sumTo(250). leaf counts nothing.
		{"loops", []call{{"sumTo", 250, false}, {"sumTo", 250, false}, {"sumTo", 250, false}, {"sumTo", 250, false},
			{"sumTo", 13, false}, {"leaf", 5, false}, {"sumTo", 0, true}}},
		{"loops to zero", []call{{"sumTo", 250, false}, {"sumTo", 250, false}, {"sumTo", 250, false}, {"sumTo", 250, false},
			{"sumTo", 14, true}}},
		// fan(n) enters itself 2^(n+1)-1 times.
		{"calls", []call{{"fan", 8, false}, {"fan", 8, false}, {"fan", 0, false}, {"fan", 0, true}}},
		{"loops then calls", []call{{"sumTo", 250, false}, {"sumTo", 250, false}, {"fan", 8, false}, {"fan", 2, false},
			{"fan", 0, false}, {"fan", 0, true}}},
		// mix(4) counts 45: its entry and 4 loop passes, sumTo(0..3)
		// 2+3+4+5, fan(0..3) 1+3+7+15.
		{"nested", []call{{"mix", 4, false}, {"sumTo", 250, false}, {"sumTo", 250, false}, {"sumTo", 250, false},
			{"sumTo", 220, false}, {"leaf", 5, false}, {"fan", 0, true}}},
		{"nested, one short", []call{{"mix", 4, false}, {"sumTo", 250, false}, {"sumTo", 250, false}, {"sumTo", 250, false},
			{"sumTo", 219, false}, {"fan", 0, false}, {"fan", 0, true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mod := instantiate(t, inst)
			mod.ExportedGlobal(InterruptExport).(api.MutableGlobal).Set(1)
			for i, k := range c.calls {
				_, err := mod.ExportedFunction(k.fn).Call(context.Background(), k.n)
				if (err != nil) != k.trap {
					t.Fatalf("call %d, %s(%d): err %v, want a trap: %v", i, k.fn, k.n, err, k.trap)
				}
			}
		})
	}
}

// wideRecursion is a module exporting f(n): a recursion n deep through a
// function whose 1,000 locals are all live across its call, so each
// frame holds them all.
func wideRecursion() []byte {
	const locals = 1000
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	body := []byte{wasmgen.OpLocalGet, 0, opI32Eqz, wasmgen.OpIf, wasmgen.BlockEmpty}
	body = append(append(body, wasmgen.Const(0)...), opReturn, wasmgen.OpEnd)
	for i := 1; i <= locals; i++ {
		body = append(append(body, wasmgen.OpLocalGet, 0), wasmgen.Const(int32(i))...)
		body = uleb(append(body, wasmgen.OpI32Add, wasmgen.OpLocalSet), i)
	}
	body = append(append(body, wasmgen.OpLocalGet, 0), wasmgen.Const(1)...)
	body = append(body, wasmgen.OpI32Sub, wasmgen.OpCall, 0)
	for i := 1; i <= locals; i++ {
		body = append(uleb(append(body, wasmgen.OpLocalGet), i), wasmgen.OpI32Add)
	}
	return (&wasmgen.Module{
		Types:    []wasmgen.FuncType{{Params: []byte{wasmgen.I32}, Results: []byte{wasmgen.I32}}},
		Funcs:    []wasmgen.Func{{I32Locals: locals, Body: append(body, wasmgen.OpEnd)}},
		MemPages: 1,
		Exports:  []wasmgen.Export{{Name: "f", Kind: wasmgen.KindFunc, Index: 0}},
	}).Encode()
}

// TestWideFramesCountForMore: a frame of 1,000 locals counts as 63 calls
// towards MaxCallDepth, so a recursion through it traps on the depth
// bound after about 300 frames, where the original module grows wazero's
// stack to its ceiling (hundreds of megabytes) before it overflows.
func TestWideFramesCountForMore(t *testing.T) {
	orig := wideRecursion()
	inst, err := instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	w := int(frameWeight(1 + 1000))
	fits := uint64(MaxCallDepth/w - 1)
	a, b := instantiate(t, orig), instantiate(t, inst)
	want, err := a.ExportedFunction("f").Call(context.Background(), fits)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.ExportedFunction("f").Call(context.Background(), fits); err != nil || got[0] != want[0] {
		t.Fatalf("f(%d) = %v, %v; want %v", fits, got, err, want)
	}
	if _, err := b.ExportedFunction("f").Call(context.Background(), fits+2); err == nil {
		t.Fatalf("f(%d) nested %d frames of weight %d without a trap", fits+2, fits+3, w)
	}
	if v := b.ExportedGlobal(InterruptExport).Get(); v != interruptDepth {
		t.Fatalf("interrupt global %d after the trap, want %d (the depth bound)", v, interruptDepth)
	}
}
