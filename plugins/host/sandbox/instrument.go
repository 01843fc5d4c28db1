package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Interrupt guarding.
//
// wazero's own guard (WithCloseOnContextDone) leaves the compiled code at
// every loop header to check, in Go, whether the module was closed. That
// exit costs tens of nanoseconds, and a Go guest (whose compiler routes
// every jump through one dispatch loop per function) passes a loop header
// on nearly every branch: guarded Go code runs 4 to 8 times slower than
// unguarded code (docs/PLUGIN-ABI.md, "Pitfalls").
//
// instrument rewrites a module instead. It adds two mutable i32 globals,
// the interrupt flag (exported as InterruptExport) and a countdown shared
// by the whole guest, which every loop iteration and every entry into a
// function that makes calls decrements (see instrumentCode for where the
// countdown lives meanwhile). When it reaches zero the guest runs
//
//	i32.const 1024
//	local.set $countdown   ;; or global.set
//	i32.const 0
//	memory.grow            ;; grows nothing, but leaves the compiled code for Go
//	drop
//	global.get $interrupt
//	if
//	  unreachable
//	end
//
// so every 1,024 loop iterations or calls the guest passes through Go,
// where the scheduler and a garbage collector's stop-the-world can reach
// its goroutine (native code cannot be preempted; a guest that never left
// it would stall the whole process at the next collection) and where a
// flag set by the host is seen. The host runs the rewritten module
// without wazero's checks and, when a call's deadline passes or its
// context ends, sets the flag from a timer: within 1,024 loop iterations
// or calls the guest traps, the call returns, the instance is discarded.
// Counting calls as well as loops matters: a guest without a single loop
// can still run for ever, making an exponential number of calls without
// ever nesting them deeply enough to overflow the stack (wazero's own
// guard checks only loop heads, and misses it).
// The host compiles (and so validates) the original module before the
// rewrite: code that names what the rewrite adds (a global, a local, the
// label around each body, a type, an export), invalid before, must not
// become valid after it. The rewriter itself refuses code that names the
// added globals or calls a function that does not exist, and a module it
// does not understand (an opcode outside WebAssembly 2.0, no memory); the
// host refuses such a module rather than run it under wazero's guard.

// InterruptExport is the export name of the injected global; a module may
// not export it itself.
const InterruptExport = "eddy_interrupt"

var errInstrument = errors.New("instrument")

// section is one section of a module.
type section struct {
	id   byte
	body []byte
}

// instrument returns a copy of wasm with the interrupt global, the
// countdown and the checks.
func instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, fmt.Errorf("%w: not a wasm binary", errInstrument)
	}
	var secs []section
	r := reader{b: wasm, i: 8}
	for r.i < len(wasm) {
		id := r.byte()
		n := int(r.u32())
		if r.err != nil || r.i+n > len(wasm) {
			return nil, fmt.Errorf("%w: truncated section %d", errInstrument, id)
		}
		secs = append(secs, section{id, wasm[r.i : r.i+n]})
		r.i += n
	}
	globals := uint32(0)
	hasGlobal, hasMemory := false, false
	start := int64(-1)
	for _, s := range secs {
		if s.id == 8 {
			sr := reader{b: s.body}
			start = int64(sr.u32())
		}
		if s.id == 6 {
			hasGlobal = true
			g := reader{b: s.body}
			globals = g.u32()
		}
		if s.id == 2 && importsGlobals(s.body) {
			return nil, fmt.Errorf("%w: module imports globals", errInstrument)
		}
		hasMemory = hasMemory || s.id == 5
	}
	if !hasMemory {
		return nil, fmt.Errorf("%w: the module defines no memory", errInstrument)
	}
	gidx := globals
	// mut i32 interrupt = 0; mut i32 countdown = checkEvery; mut i32 depth = 0
	newGlobals := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01, 0x41}
	newGlobals = append(appendSLEB(newGlobals, checkEvery), 0x0B, 0x7F, 0x01, 0x41, 0x00, 0x0B)

	imported, sigs, ntypes, err := funcSigs(secs)
	if err != nil {
		return nil, err
	}
	// Each instrumented body is wrapped in a block of the function's
	// result type; a function with several results needs a type
	// () -> results for it, appended to the type section.
	var extraTypes []byte
	nextra := uint32(0)
	blockTypes := make([][]byte, len(sigs))
	added := map[string][]byte{}
	for i, sg := range sigs {
		switch len(sg.results) {
		case 0:
			blockTypes[i] = []byte{0x40}
		case 1:
			blockTypes[i] = sg.results
		default:
			bt, ok := added[string(sg.results)]
			if !ok {
				bt = appendSLEB(nil, int64(ntypes+nextra))
				added[string(sg.results)] = bt
				extraTypes = append(extraTypes, 0x60, 0x00)
				extraTypes = binary.AppendUvarint(extraTypes, uint64(len(sg.results)))
				extraTypes = append(extraTypes, sg.results...)
				nextra++
			}
			blockTypes[i] = bt
		}
	}

	out := append([]byte(nil), wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	sawExport := false
	for _, s := range secs {
		switch s.id {
		case 1:
			body := binary.AppendUvarint(nil, uint64(ntypes+nextra))
			body = append(body, s.body[(&reader{b: s.body}).skipU32():]...)
			emit(1, append(body, extraTypes...))
		case 6:
			g := reader{b: s.body}
			n := g.u32()
			body := binary.AppendUvarint(nil, uint64(n+newGlobalCount))
			body = append(append(body, s.body[g.i:]...), newGlobals...)
			emit(6, body)
		case 7:
			if !hasGlobal {
				emit(6, append([]byte{newGlobalCount}, newGlobals...))
			}
			sawExport = true
			e := reader{b: s.body}
			n := e.u32()
			for k := uint32(0); k < n && e.err == nil; k++ {
				name := e.name()
				kind := e.byte()
				idx := e.u32()
				if name == InterruptExport || (start >= 0 && name == "_initialize") {
					return nil, fmt.Errorf("%w: the module exports the reserved name %s", errInstrument, name)
				}
				if kind == 3 && idx >= globals {
					return nil, fmt.Errorf("%w: export %s names global %d of %d", errInstrument, name, idx, globals)
				}
			}
			extra := uint64(1)
			if start >= 0 {
				extra++
			}
			body := binary.AppendUvarint(nil, uint64(n)+extra)
			body = append(body, s.body[(&reader{b: s.body}).skipU32():]...)
			body = binary.AppendUvarint(body, uint64(len(InterruptExport)))
			body = append(body, InterruptExport...)
			body = append(body, 0x03) // global
			body = binary.AppendUvarint(body, uint64(gidx))
			if start >= 0 {
				// The start function becomes _initialize, which the host
				// calls under the interrupt guard right after instantiation.
				body = binary.AppendUvarint(body, uint64(len("_initialize")))
				body = append(body, "_initialize"...)
				body = append(body, 0x00) // function
				body = binary.AppendUvarint(body, uint64(start))
			}
			emit(7, body)
		case 8:
			// Dropped: see the export section.
		case 10:
			body, err := instrumentCode(s.body, globals, imported, sigs, blockTypes)
			if err != nil {
				return nil, err
			}
			emit(10, body)
		default:
			emit(s.id, s.body)
		}
	}
	if !sawExport {
		return nil, fmt.Errorf("%w: no export section", errInstrument)
	}
	return out, nil
}

func (r *reader) skipU32() int { r.u32(); return r.i }

func importsGlobals(body []byte) bool {
	r := reader{b: body}
	n := r.u32()
	for k := uint32(0); k < n && r.err == nil; k++ {
		r.name()
		r.name()
		switch r.byte() {
		case 0:
			r.u32()
		default:
			return true // tables, memories and globals are refused at registration anyway
		}
	}
	return false
}

// checkEvery is how many loop iterations and function entries pass
// between two visits to Go.
const checkEvery = 1024

// MaxCallDepth is how deeply calls into functions that make calls may
// nest in a guarded guest (a frame with many locals counts as several;
// see frameWeight). wazero grows a call's stack up to hundreds of
// megabytes, outside the plugin's memory cap; a guest nesting deeper
// traps, with the interrupt global set to interruptDepth so the host can
// say why.
const MaxCallDepth = 20000

// The injected globals, from the first index after the module's own, and
// the interrupt global's values.
const (
	newGlobalCount  = 3 // interrupt, countdown, depth
	interruptDepth  = 2 // set by the guest before it traps on MaxCallDepth
	interruptRaised = 1 // set by the host at a deadline
)

// checks builds the code inserted into a function whose countdown local
// is l; gidx is the interrupt global, gidx+1 the countdown global.
type checks struct{ gidx, l uint32 }

func (c checks) op(b []byte, op byte, idx uint32) []byte {
	return binary.AppendUvarint(append(b, op), uint64(idx))
}

// tail ends an entry or loop check, the decremented countdown on the
// stack: when it reached zero it restarts the countdown (set with setOp,
// local.set or global.set, at idx) and visits Go, then traps if the
// interrupt flag is set.
func (c checks) tail(b []byte, setOp byte, idx uint32) []byte {
	b = append(b, 0x45, 0x04, 0x40)                               // i32.eqz; if
	b = c.op(appendSLEB(append(b, 0x41), checkEvery), setOp, idx) // i32.const checkEvery; set
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1A)                   // i32.const 0; memory.grow 0; drop
	b = c.op(b, 0x23, c.gidx)                                     // global.get $interrupt
	b = append(b, 0x04, 0x40, 0x00, 0x0B)                         // if unreachable end
	return append(b, 0x0B)                                        // end
}

// entry takes the countdown from its global into the local, less one for
// this entry.
func (c checks) entry(b []byte) []byte {
	b = c.op(b, 0x23, c.gidx+1)                  // global.get $countdown
	b = append(b, 0x41, 0x01, 0x6B)              // i32.const 1; i32.sub
	return c.tail(c.op(b, 0x22, c.l), 0x21, c.l) // local.tee $l
}

// loop counts one loop iteration on the local.
func (c checks) loop(b []byte) []byte {
	b = c.op(b, 0x20, c.l)                       // local.get $l
	b = append(b, 0x41, 0x01, 0x6B)              // i32.const 1; i32.sub
	return c.tail(c.op(b, 0x22, c.l), 0x21, c.l) // local.tee $l
}

// globalEntry counts a function's entry on the countdown global itself,
// for a function without loops (which keeps no local).
func (c checks) globalEntry(b []byte) []byte {
	b = c.op(b, 0x23, c.gidx+1)     // global.get $countdown
	b = append(b, 0x41, 0x01, 0x6B) // i32.const 1; i32.sub
	b = c.op(b, 0x24, c.gidx+1)     // global.set $countdown
	b = c.op(b, 0x23, c.gidx+1)     // global.get $countdown
	return c.tail(b, 0x24, c.gidx+1)
}

// enter counts a call into a function that makes calls, of weight w (see
// frameWeight), on the depth global, trapping past MaxCallDepth.
func (c checks) enter(b []byte, w uint32) []byte {
	b = c.op(b, 0x23, c.gidx+2) // global.get $depth
	b = appendSLEB(append(b, 0x41), int64(w))
	b = append(b, 0x6A)         // i32.add
	b = c.op(b, 0x24, c.gidx+2) // global.set $depth
	b = c.op(b, 0x23, c.gidx+2) // global.get $depth
	b = appendSLEB(append(b, 0x41), MaxCallDepth)
	b = append(b, 0x4B, 0x04, 0x40)     // i32.gt_u; if
	b = append(b, 0x41, interruptDepth) // i32.const interruptDepth
	b = c.op(b, 0x24, c.gidx)           // global.set $interrupt
	return append(b, 0x00, 0x0B)        // unreachable end
}

// leave undoes enter at an exit.
func (c checks) leave(b []byte, w uint32) []byte {
	b = c.op(b, 0x23, c.gidx+2) // global.get $depth
	b = appendSLEB(append(b, 0x41), int64(w))
	b = append(b, 0x6B)            // i32.sub
	return c.op(b, 0x24, c.gidx+2) // global.set $depth
}

// frameWeight is what a call into a function with slots of parameters
// and locals (a v128 counts two) adds to the depth: one, and one more per
// 16 slots, since wazero keeps live locals in the call's frame: a
// recursion through functions of a thousand locals would otherwise grow
// the stack to wazero's ceiling long before MaxCallDepth calls.
func frameWeight(slots uint64) uint32 {
	return uint32(min(1+slots/16, MaxCallDepth+1))
}

// save hands the countdown to the global (before a call or an exit).
func (c checks) save(b []byte) []byte {
	return c.op(c.op(b, 0x20, c.l), 0x24, c.gidx+1) // local.get $l; global.set $countdown
}

// load takes the countdown back after a call.
func (c checks) load(b []byte) []byte {
	return c.op(c.op(b, 0x23, c.gidx+1), 0x21, c.l) // global.get $countdown; local.set $l
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// funcType is what the rewriter needs of a function's type.
type funcType struct {
	params  uint32
	results []byte // value types
}

// funcSigs returns the number of functions the module imports, the
// signature of each function it defines, in the order of its code
// section, and the number of types it declares.
func funcSigs(secs []section) (imported uint32, sigs []funcType, ntypes uint32, err error) {
	var types []funcType
	for _, s := range secs {
		r := reader{b: s.body}
		switch s.id {
		case 1:
			n := r.u32()
			for k := uint32(0); k < n && r.err == nil; k++ {
				if r.byte() != 0x60 {
					return 0, nil, 0, fmt.Errorf("%w: type %d is not a function type", errInstrument, k)
				}
				np := r.u32()
				r.skip(int(np))
				nr := int(r.u32())
				at := r.i
				r.skip(nr)
				if r.err == nil {
					types = append(types, funcType{params: np, results: s.body[at:r.i]})
				}
			}
		case 2:
			n := r.u32()
			for k := uint32(0); k < n && r.err == nil; k++ {
				r.name()
				r.name()
				if r.byte() != 0 {
					return 0, nil, 0, fmt.Errorf("%w: import %d is not a function", errInstrument, k)
				}
				r.u32()
				imported++
			}
		case 3:
			n := r.u32()
			for k := uint32(0); k < n && r.err == nil; k++ {
				t := r.u32()
				if int(t) >= len(types) {
					return 0, nil, 0, fmt.Errorf("%w: function %d has type %d of %d", errInstrument, k, t, len(types))
				}
				sigs = append(sigs, types[t])
			}
		}
		if r.err != nil {
			return 0, nil, 0, fmt.Errorf("%w: section %d: %w", errInstrument, s.id, r.err)
		}
	}
	return imported, sigs, uint32(len(types)), nil
}

// body is one function body of the code section.
type body struct {
	code   []byte // locals and instructions
	locals int    // offset of the instructions in code
	groups uint32 // local groups
	count  uint64 // locals declared
	slots  uint64 // the same, a v128 counting two
	loops  bool   // has a loop
	calls  bool   // has a call or call_indirect
}

// readBodies splits the code section into its function bodies and notes
// which have loops and which make calls. gidx is the index of the first
// new global: code that names one was invalid before the rewrite and is
// refused.
func readBodies(sec []byte, gidx, funcs uint32) ([]body, error) {
	r := reader{b: sec}
	n := r.u32()
	bodies := make([]body, 0, min(n, uint32(len(sec))))
	for f := uint32(0); f < n; f++ {
		size := int(r.u32())
		if r.err != nil || r.i+size > len(sec) {
			return nil, fmt.Errorf("%w: function %d: truncated body", errInstrument, f)
		}
		fr := reader{b: sec[r.i : r.i+size]}
		r.i += size
		b := body{code: fr.b, groups: fr.u32()}
		for g := uint32(0); g < b.groups && fr.err == nil; g++ {
			n := uint64(fr.u32())
			b.count += n
			if fr.byte() == 0x7B { // v128
				n *= 2
			}
			b.slots += n
		}
		if fr.err != nil {
			return nil, fmt.Errorf("%w: function %d: locals", errInstrument, f)
		}
		b.locals = fr.i
		for fr.i < len(fr.b) {
			start := fr.i
			op := fr.byte()
			if err := skipImmediates(&fr, op); err != nil {
				return nil, fmt.Errorf("%w: function %d at %d: %w", errInstrument, f, start, err)
			}
			switch op {
			case 0x03:
				b.loops = true
			case 0x10:
				b.calls = true
				if callee := (&reader{b: fr.b, i: start + 1}).u32(); callee >= funcs {
					return nil, fmt.Errorf("%w: function %d at %d: call to function %d of %d", errInstrument, f, start, callee, funcs)
				}
			case 0x11:
				b.calls = true
			case 0x23, 0x24: // global.get, global.set
				if g := (&reader{b: fr.b, i: start + 1}).u32(); g >= gidx {
					return nil, fmt.Errorf("%w: function %d at %d: global %d of %d", errInstrument, f, start, g, gidx)
				}
			}
		}
		bodies = append(bodies, b)
	}
	return bodies, nil
}

// instrumentCode rewrites the code section so that one countdown, shared
// by the whole guest across calls and recursion, counts every loop
// iteration and every entry into a function that makes calls, and is
// checked when it reaches zero: no execution runs more than checkEvery
// of those between two checks. Between two of them a guest only runs
// straight-line code and calls to functions without loops or calls,
// so a guest without loops that makes an exponential number of calls is
// stopped like a loop.
//
// A function with loops keeps the countdown in a local of its own while
// it runs (a register, where the global would be a load and a store per
// iteration): taken from the global on entry, handed back to it before a
// call that may count and at every exit, taken back after the call. A
// function that makes calls but has no loop counts its entry on the
// global. A function that makes calls also counts its nesting on the
// depth global, up to MaxCallDepth. A function with neither loops nor
// calls is left as it is. gidx is the interrupt global, gidx+1 the
// countdown, gidx+2 the depth; imported is the number of imported
// functions, sigs holds each defined function's type and blockTypes the
// block type of its results.
func instrumentCode(sec []byte, gidx, imported uint32, sigs []funcType, blockTypes [][]byte) ([]byte, error) {
	bodies, err := readBodies(sec, gidx, imported+uint32(len(sigs)))
	if err != nil {
		return nil, err
	}
	if len(bodies) != len(sigs) {
		return nil, fmt.Errorf("%w: %d function bodies for %d functions", errInstrument, len(bodies), len(sigs))
	}
	// counts reports whether a call to function idx may use the countdown.
	counts := func(idx uint32) bool {
		if idx < imported {
			return false // the host's functions do not
		}
		b := bodies[idx-imported]
		return b.loops || b.calls
	}
	out := binary.AppendUvarint(nil, uint64(len(bodies)))
	var code []byte
	for f, b := range bodies {
		code = code[:0]
		if !b.loops && !b.calls {
			code = append(code, b.code...)
		} else if code, err = instrumentBody(code, b, gidx, sigs[f].params, blockTypes[f], counts); err != nil {
			return nil, fmt.Errorf("function %d: %w", f, err)
		}
		out = binary.AppendUvarint(out, uint64(len(code)))
		out = append(out, code...)
	}
	return out, nil
}

// instrumentBody appends to code the body b, a function with loops or
// calls that has np parameters, rewritten: a function with loops keeps
// the countdown in a new local, and a function that makes calls counts
// its entry on the countdown and its nesting on the depth global. The
// original instructions are wrapped in a block of type bt (the
// function's results), so that a branch out of the function ends the
// block instead and the code that follows it, run at every exit but a
// return (which runs it first), hands back the countdown and the depth.
func instrumentBody(code []byte, b body, gidx, np uint32, bt []byte, counts func(uint32) bool) ([]byte, error) {
	locals := uint64(np) + b.count
	if locals >= math.MaxUint32 {
		return nil, fmt.Errorf("%w: too many locals", errInstrument)
	}
	c := checks{gidx: gidx, l: uint32(locals)}
	w := frameWeight(uint64(np) + b.slots)
	if b.loops {
		code = binary.AppendUvarint(code, uint64(b.groups)+1)
		code = append(code, b.code[(&reader{b: b.code}).skipU32():b.locals]...)
		code = append(code, 0x01, 0x7F) // one i32
	} else {
		code = append(code, b.code[:b.locals]...)
	}
	if b.calls {
		code = c.enter(code, w)
	}
	switch {
	case b.loops && b.calls:
		code = c.entry(code)
	case b.loops:
		code = c.load(code)
	default:
		code = c.globalEntry(code)
	}
	exit := func(code []byte) []byte {
		if b.loops {
			code = c.save(code)
		}
		if b.calls {
			code = c.leave(code, w)
		}
		return code
	}
	code = append(append(code, 0x02), bt...) // block bt
	r := reader{b: b.code, i: b.locals}
	for r.i < len(b.code) {
		start := r.i
		op := r.byte()
		_ = skipImmediates(&r, op) // readBodies walked it
		around := false            // a call that may count, from a function keeping a local
		switch op {
		case 0x0F: // return
			code = exit(code)
		case 0x10: // call
			around = b.loops && counts((&reader{b: b.code[:r.i], i: start + 1}).u32())
		case 0x11: // call_indirect
			around = b.loops
		}
		if around {
			code = c.save(code)
		}
		code = append(code, b.code[start:r.i]...) // the last is the body's end, now the block's
		if op == 0x03 {
			code = c.loop(code)
		}
		if around {
			code = c.load(code)
		}
	}
	return append(exit(code), 0x0B), nil
}

// skipImmediates advances past the immediates of op (WebAssembly 2.0:
// MVP, sign extension, saturating conversions, multi-value, bulk memory,
// reference types and fixed-width SIMD).
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		r.blockType()
	case op == 0x0C || op == 0x0D: // br, br_if
		r.u32()
	case op == 0x0E: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10: // call
		r.u32()
	case op == 0x11: // call_indirect
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.byte()
		}
	case op >= 0x20 && op <= 0x26: // locals, globals, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3E: // loads and stores
		r.u32()
		r.u32()
	case op == 0x3F || op == 0x40: // memory.size, memory.grow
		r.byte()
	case op == 0x41:
		r.s64()
	case op == 0x42:
		r.s64()
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op == 0xD0: // ref.null
		r.byte()
	case op == 0xD2: // ref.func
		r.u32()
	case op == 0xFC:
		switch sub := r.u32(); {
		case sub <= 7:
		case sub == 8: // memory.init
			r.u32()
			r.byte()
		case sub == 9, sub == 13, sub >= 15 && sub <= 17:
			r.u32()
		case sub == 10:
			r.byte()
			r.byte()
		case sub == 11:
			r.byte()
		case sub == 12, sub == 14:
			r.u32()
			r.u32()
		default:
			return fmt.Errorf("unknown opcode 0xFC %d", sub)
		}
	case op == 0xFD:
		switch sub := r.u32(); {
		case sub <= 11, sub == 92, sub == 93:
			r.u32()
			r.u32()
		case sub == 12, sub == 13:
			r.skip(16)
		case sub >= 21 && sub <= 34:
			r.byte()
		case sub >= 84 && sub <= 91:
			r.u32()
			r.u32()
			r.byte()
		case sub > 255:
			return fmt.Errorf("unknown opcode 0xFD %d", sub)
		}
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0B || op == 0x0F || op == 0x1A || op == 0x1B || op == 0xD1:
	case op >= 0x45 && op <= 0xC4: // numeric, sign extension
	default:
		return fmt.Errorf("unknown opcode %#x", op)
	}
	return r.err
}

func (r *reader) blockType() {
	switch c := r.peek(); c {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		r.i++
	default:
		r.s64()
	}
}

func (r *reader) peek() byte {
	if r.i >= len(r.b) {
		r.err = errShort
		return 0
	}
	return r.b[r.i]
}

func (r *reader) s64() {
	for k := 0; k < 10; k++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.err = errShort
}

func (r *reader) skip(n int) {
	if r.i+n > len(r.b) {
		r.err = errShort
		return
	}
	r.i += n
}
