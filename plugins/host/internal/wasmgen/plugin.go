package wasmgen

// Instruction bytes used by the plugin bodies below.
const (
	OpUnreachable = 0x00
	OpLoop        = 0x03
	OpIf          = 0x04
	OpEnd         = 0x0B
	OpBr          = 0x0C
	OpBrIf        = 0x0D
	OpCall        = 0x10
	OpDrop        = 0x1A
	OpLocalGet    = 0x20
	OpLocalSet    = 0x21
	OpGlobalGet   = 0x23
	OpGlobalSet   = 0x24
	OpI32Load     = 0x28
	OpI32Store    = 0x36
	OpI32Store8   = 0x3A
	OpMemorySize  = 0x3F
	OpMemoryGrow  = 0x40
	OpI32Const    = 0x41
	OpI32Ne       = 0x47
	OpI32GtU      = 0x4B
	OpI32Add      = 0x6A
	OpI32Sub      = 0x6B
	OpI32And      = 0x71
	OpI32Shl      = 0x74
	OpI32ShrU     = 0x76
	BlockEmpty    = 0x40
)

// Const returns i32.const v.
func Const(v int32) []byte { return SLEB([]byte{OpI32Const}, int64(v)) }

// Cat concatenates instruction sequences.
func Cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Plugin describes a raw plugin: an ABI-complete module (memory, version,
// bump allocator) with the given kind bodies. Function indices: imports
// first (in Imports order), then version, alloc, free, then Partition,
// Transform, Init, Segment, Records when given.
type Plugin struct {
	Version   uint32 // 0 means 1.0
	Imports   []Import
	Partition []byte // body of eddy_partition(in, len, out) -> i32
	Transform []byte // body of eddy_transform(in, len, out) -> i32
	Init      []byte // body of eddy_init(ptr, len) -> i32
	Segment   []byte // body of eddy_cleanup_segment(ptr, len) -> i32
	Records   []byte // body of eddy_cleanup_records(in, len, out) -> i32
	MemPages  uint32 // 0 means 2
	Data      []Data
	Start     []byte // body of a start function, when not nil
	// Extra exports with function indices counted as above.
	Exports []Export
	// OmitAlloc leaves out eddy_alloc.
	OmitAlloc bool
	// ExportStart exports a no-op _start (a WASI command).
	ExportStart bool
}

// Types of a plugin module, by index.
const (
	TypeV_I    = 0 // () -> i32
	TypeI_I    = 1 // (i32) -> i32
	TypeI_V    = 2 // (i32) -> ()
	TypeII_I   = 3 // (i32, i32) -> i32
	TypeIII_I  = 4 // (i32, i32, i32) -> i32
	TypeII_V   = 5 // (i32, i32) -> ()
	TypeIII_V  = 6 // (i32, i32, i32) -> ()
	TypeV_V    = 7 // () -> ()
	typesCount = 8
)

// Types returns the plugin type section.
func Types() []FuncType {
	i := I32
	return []FuncType{
		{nil, []byte{i}}, {[]byte{i}, []byte{i}}, {[]byte{i}, nil}, {[]byte{i, i}, []byte{i}},
		{[]byte{i, i, i}, []byte{i}}, {[]byte{i, i}, nil}, {[]byte{i, i, i}, nil}, {nil, nil},
	}
}

// alloc is a bump allocator over global 0 that grows memory as needed.
var alloc = Cat(
	[]byte{OpGlobalGet, 0, OpLocalSet, 1},
	[]byte{OpGlobalGet, 0, OpLocalGet, 0, OpI32Add}, Const(7), []byte{OpI32Add}, Const(-8), []byte{OpI32And, OpGlobalSet, 0},
	[]byte{OpGlobalGet, 0, OpMemorySize, 0}, Const(16), []byte{OpI32Shl, OpI32GtU, OpIf, BlockEmpty},
	[]byte{OpGlobalGet, 0, OpMemorySize, 0}, Const(16), []byte{OpI32Shl, OpI32Sub}, Const(65535), []byte{OpI32Add}, Const(16), []byte{OpI32ShrU, OpMemoryGrow, 0, OpDrop},
	[]byte{OpEnd, OpLocalGet, 1, OpEnd},
)

// Encode returns the module.
func (p Plugin) Encode() []byte {
	m := Module{Types: Types(), Imports: p.Imports, MemPages: p.MemPages, Data: p.Data, Globals: []Global{{Mutable: true, Init: 1024}}}
	if m.MemPages == 0 {
		m.MemPages = 2
	}
	base := uint32(len(p.Imports))
	add := func(name string, typ uint32, body []byte, locals uint32) {
		idx := base + uint32(len(m.Funcs))
		m.Funcs = append(m.Funcs, Func{TypeIdx: typ, I32Locals: locals, Body: body})
		if name != "" {
			m.Exports = append(m.Exports, Export{Name: name, Kind: KindFunc, Index: idx})
		}
	}
	v := p.Version
	if v == 0 {
		v = 1 << 16
	}
	m.Exports = append(m.Exports, Export{Name: "memory", Kind: KindMemory, Index: 0})
	add("eddy_abi_version", TypeV_I, Cat(Const(int32(v)), []byte{OpEnd}), 0)
	if !p.OmitAlloc {
		add("eddy_alloc", TypeI_I, alloc, 1)
	} else {
		add("", TypeI_I, alloc, 1)
	}
	add("eddy_free", TypeI_V, []byte{OpEnd}, 0)
	if p.Partition != nil {
		add("eddy_partition", TypeIII_I, p.Partition, 2)
	}
	if p.Transform != nil {
		add("eddy_transform", TypeIII_I, p.Transform, 2)
	}
	if p.Init != nil {
		add("eddy_init", TypeII_I, p.Init, 2)
	}
	if p.Segment != nil {
		add("eddy_cleanup_segment", TypeII_I, p.Segment, 2)
	}
	if p.Records != nil {
		add("eddy_cleanup_records", TypeIII_I, p.Records, 2)
	}
	if p.ExportStart {
		add("_start", TypeV_V, []byte{OpEnd}, 0)
	}
	if p.Start != nil {
		idx := base + uint32(len(m.Funcs))
		add("", TypeV_V, p.Start, 0)
		m.Start = &idx
	}
	m.Exports = append(m.Exports, p.Exports...)
	return m.Encode()
}

// RecordCount loads the input's record_count (in_ptr is local 0).
var RecordCount = []byte{OpLocalGet, 0, OpI32Load, 2, 8}
