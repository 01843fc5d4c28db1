package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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
// the interrupt flag (exported as InterruptExport) and a countdown, and at
// the head of every loop inserts
//
//	global.get $countdown
//	i32.const 1
//	i32.sub
//	global.set $countdown
//	global.get $countdown
//	i32.eqz
//	if
//	  i32.const 1024
//	  global.set $countdown
//	  i32.const 0
//	  memory.grow        ;; grows nothing, but leaves the compiled code for Go
//	  drop
//	  global.get $interrupt
//	  if
//	    unreachable
//	  end
//	end
//
// A loop iteration therefore costs a few register-and-global operations,
// and every 1,024 iterations the guest passes through Go, where the
// scheduler and a garbage collector's stop-the-world can reach its
// goroutine (native code cannot be preempted; a guest that never left it
// would stall the whole process at the next collection) and where a
// flag set by the host is seen. The host runs the rewritten module
// without wazero's checks and, when a call's deadline passes or its
// context ends, sets the flag from a timer: within 1,024 iterations the
// guest traps, the call returns, the instance is discarded. Code without
// loops terminates by itself (recursion ends in a stack overflow trap).
// The original module is validated by compiling the rewrite, and code that
// names the added globals (which was invalid before) is refused; a module
// the rewriter does not understand (an opcode outside WebAssembly 2.0, no
// memory) falls back to wazero's guard.

// InterruptExport is the export name of the injected global; a module may
// not export it itself.
const InterruptExport = "eddy_interrupt"

var errInstrument = errors.New("instrument")

// instrument returns a copy of wasm with the interrupt global and the loop
// checks.
func instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, fmt.Errorf("%w: not a wasm binary", errInstrument)
	}
	type section struct {
		id   byte
		body []byte
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
	hasGlobal := false
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
	}
	hasMemory := false
	for _, s := range secs {
		if s.id == 5 {
			hasMemory = true
		}
	}
	if !hasMemory {
		return nil, fmt.Errorf("%w: the module defines no memory", errInstrument)
	}
	gidx := globals
	// mut i32 interrupt = 0; mut i32 countdown = checkEvery
	newGlobals := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01, 0x41}
	newGlobals = append(appendSLEB(newGlobals, checkEvery), 0x0B)

	out := append([]byte(nil), wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	sawExport := false
	for _, s := range secs {
		switch s.id {
		case 6:
			g := reader{b: s.body}
			n := g.u32()
			body := binary.AppendUvarint(nil, uint64(n+2))
			body = append(append(body, s.body[g.i:]...), newGlobals...)
			emit(6, body)
		case 7:
			if !hasGlobal {
				emit(6, append([]byte{2}, newGlobals...))
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
			body, err := instrumentCode(s.body, globals)
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

// checkEvery is how many loop iterations pass between two visits to Go.
const checkEvery = 1024

// loopCheck returns the code inserted at loop heads (see the top of the
// file); gidx is the interrupt global, gidx+1 the countdown.
func loopCheck(gidx uint32) []byte {
	g := func(op byte, idx uint32) []byte { return binary.AppendUvarint([]byte{op}, uint64(idx)) }
	var c []byte
	c = append(c, g(0x23, gidx+1)...) // global.get $countdown
	c = append(c, 0x41, 0x01, 0x6B)   // i32.const 1; i32.sub
	c = append(c, g(0x24, gidx+1)...) // global.set $countdown
	c = append(c, g(0x23, gidx+1)...) // global.get $countdown
	c = append(c, 0x45, 0x04, 0x40)   // i32.eqz; if
	c = appendSLEB(append(c, 0x41), checkEvery)
	c = append(c, g(0x24, gidx+1)...)           // global.set $countdown
	c = append(c, 0x41, 0x00, 0x40, 0x00, 0x1A) // i32.const 0; memory.grow 0; drop
	c = append(c, g(0x23, gidx)...)             // global.get $interrupt
	c = append(c, 0x04, 0x40, 0x00, 0x0B)       // if unreachable end
	return append(c, 0x0B)                      // end
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

// instrumentCode rewrites the code section. gidx, the index of the first
// new global, is also the number of the module's own globals: code that
// names the new ones was invalid before the rewrite and is refused.
func instrumentCode(sec []byte, gidx uint32) ([]byte, error) {
	check := loopCheck(gidx)

	r := reader{b: sec}
	n := r.u32()
	out := binary.AppendUvarint(nil, uint64(n))
	var body []byte
	for f := uint32(0); f < n; f++ {
		size := int(r.u32())
		if r.err != nil || r.i+size > len(sec) {
			return nil, fmt.Errorf("%w: function %d: truncated body", errInstrument, f)
		}
		fr := reader{b: sec[r.i : r.i+size]}
		r.i += size
		// Locals.
		groups := fr.u32()
		for g := uint32(0); g < groups; g++ {
			fr.u32()
			fr.byte()
		}
		if fr.err != nil {
			return nil, fmt.Errorf("%w: function %d: locals", errInstrument, f)
		}
		body = append(body[:0], fr.b[:fr.i]...)
		for fr.i < len(fr.b) {
			start := fr.i
			op := fr.byte()
			if err := skipImmediates(&fr, op); err != nil {
				return nil, fmt.Errorf("%w: function %d at %d: %w", errInstrument, f, start, err)
			}
			if op == 0x23 || op == 0x24 {
				if g := (&reader{b: fr.b, i: start + 1}).u32(); g >= gidx {
					return nil, fmt.Errorf("%w: function %d at %d: global %d of %d", errInstrument, f, start, g, gidx)
				}
			}
			body = append(body, fr.b[start:fr.i]...)
			if op == 0x03 { // loop
				body = append(body, check...)
			}
		}
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	return out, nil
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
