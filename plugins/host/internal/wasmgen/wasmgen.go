// Package wasmgen assembles small WebAssembly binaries for tests: plugins
// that misbehave in precise ways (loops, traps, bad outputs, forbidden
// imports) without a compiler toolchain. It encodes the binary format
// directly; function bodies are raw instruction bytes.
package wasmgen

import "encoding/binary"

// Value types.
const (
	I32 byte = 0x7F
	I64 byte = 0x7E
)

// Export and import kinds.
const (
	KindFunc   byte = 0x00
	KindTable  byte = 0x01
	KindMemory byte = 0x02
	KindGlobal byte = 0x03
)

// FuncType is a function signature.
type FuncType struct {
	Params, Results []byte
}

// Import is a function import (TypeIdx) or, with Kind set, another kind
// whose descriptor bytes are Desc.
type Import struct {
	Module, Name string
	Kind         byte
	TypeIdx      uint32
	Desc         []byte
}

// Func is a defined function: its type, extra i32 locals and body
// (instructions including the final end, 0x0B).
type Func struct {
	TypeIdx   uint32
	I32Locals uint32
	Body      []byte
}

// Global is a defined global with an i32 initial value.
type Global struct {
	Mutable bool
	Init    int32
}

// Export names a function, memory or global.
type Export struct {
	Name  string
	Kind  byte
	Index uint32
}

// Data is an active data segment at a constant offset.
type Data struct {
	Offset uint32
	Bytes  []byte
}

// Module is a module to encode.
type Module struct {
	Types    []FuncType
	Imports  []Import
	Funcs    []Func
	MemPages uint32 // 0 means no memory
	MemMax   uint32 // 0 means no maximum
	Globals  []Global
	Exports  []Export
	Start    *uint32
	Data     []Data
}

func uleb(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// SLEB appends a signed LEB128.
func SLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func name(b []byte, s string) []byte { return append(uleb(b, uint64(len(s))), s...) }

func section(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = uleb(out, uint64(len(body)))
	return append(out, body...)
}

// Encode returns the binary.
func (m *Module) Encode() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	if len(m.Types) > 0 {
		b := uleb(nil, uint64(len(m.Types)))
		for _, t := range m.Types {
			b = append(b, 0x60)
			b = append(uleb(b, uint64(len(t.Params))), t.Params...)
			b = append(uleb(b, uint64(len(t.Results))), t.Results...)
		}
		out = section(out, 1, b)
	}
	if len(m.Imports) > 0 {
		b := uleb(nil, uint64(len(m.Imports)))
		for _, im := range m.Imports {
			b = name(name(b, im.Module), im.Name)
			b = append(b, im.Kind)
			if im.Kind == KindFunc {
				b = uleb(b, uint64(im.TypeIdx))
			} else {
				b = append(b, im.Desc...)
			}
		}
		out = section(out, 2, b)
	}
	if len(m.Funcs) > 0 {
		b := uleb(nil, uint64(len(m.Funcs)))
		for _, f := range m.Funcs {
			b = uleb(b, uint64(f.TypeIdx))
		}
		out = section(out, 3, b)
	}
	if m.MemPages > 0 {
		b := []byte{1}
		if m.MemMax > 0 {
			b = uleb(append(b, 1), uint64(m.MemPages))
			b = uleb(b, uint64(m.MemMax))
		} else {
			b = uleb(append(b, 0), uint64(m.MemPages))
		}
		out = section(out, 5, b)
	}
	if len(m.Globals) > 0 {
		b := uleb(nil, uint64(len(m.Globals)))
		for _, g := range m.Globals {
			mut := byte(0)
			if g.Mutable {
				mut = 1
			}
			b = append(b, I32, mut, 0x41)
			b = append(SLEB(b, int64(g.Init)), 0x0B)
		}
		out = section(out, 6, b)
	}
	if len(m.Exports) > 0 {
		b := uleb(nil, uint64(len(m.Exports)))
		for _, e := range m.Exports {
			b = append(name(b, e.Name), e.Kind)
			b = uleb(b, uint64(e.Index))
		}
		out = section(out, 7, b)
	}
	if m.Start != nil {
		out = section(out, 8, uleb(nil, uint64(*m.Start)))
	}
	if len(m.Funcs) > 0 {
		b := uleb(nil, uint64(len(m.Funcs)))
		for _, f := range m.Funcs {
			var body []byte
			if f.I32Locals > 0 {
				body = uleb(append(body, 1), uint64(f.I32Locals))
				body = append(body, I32)
			} else {
				body = append(body, 0)
			}
			body = append(body, f.Body...)
			b = append(uleb(b, uint64(len(body))), body...)
		}
		out = section(out, 10, b)
	}
	if len(m.Data) > 0 {
		b := uleb(nil, uint64(len(m.Data)))
		for _, d := range m.Data {
			b = append(b, 0, 0x41)
			b = append(SLEB(b, int64(d.Offset)), 0x0B)
			b = append(uleb(b, uint64(len(d.Bytes))), d.Bytes...)
		}
		out = section(out, 11, b)
	}
	return out
}
