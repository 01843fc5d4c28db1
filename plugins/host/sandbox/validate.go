package sandbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/eddybroker/eddy/plugins/abi"
)

// funcSig is a function type, for comparing imports and exports with the
// ABI.
type funcSig struct {
	params, results string
}

func sigOf(def api.FunctionDefinition) funcSig {
	return funcSig{params: string(def.ParamTypes()), results: string(def.ResultTypes())}
}

func (s funcSig) String() string {
	name := func(ts string) string {
		var parts []string
		for i := 0; i < len(ts); i++ {
			parts = append(parts, api.ValueTypeName(ts[i]))
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return name(s.params) + " -> " + name(s.results)
}

const i32 = string(rune(api.ValueTypeI32))

func sig(params, results int) funcSig {
	return funcSig{params: strings.Repeat(i32, params), results: strings.Repeat(i32, results)}
}

// The signatures the ABI fixes.
var (
	hostImports = map[string]funcSig{
		abi.ImportSetOutput: sig(2, 0),
		abi.ImportSetError:  sig(3, 0),
		abi.ImportLog:       sig(3, 0),
	}
	requiredExports = map[string]funcSig{
		abi.ExportABIVersion: sig(0, 1),
		abi.ExportAlloc:      sig(1, 1),
		abi.ExportFree:       sig(1, 0),
	}
	optionalExports = map[string]funcSig{
		abi.ExportInitialize:     sig(0, 0),
		abi.ExportInit:           sig(2, 1),
		abi.ExportKinds:          sig(0, 1),
		abi.ExportPartition:      sig(3, 1),
		abi.ExportTransform:      sig(3, 1),
		abi.ExportCleanupSegment: sig(2, 1),
		abi.ExportCleanupRecords: sig(3, 1),
	}
)

// checkImportSection walks the binary's import section and refuses any
// import that is not a function (a memory, table, global or tag import
// is outside the ABI). Function imports are checked by name and type in
// inspect. Malformed sections are left to the compiler to report.
func checkImportSection(wasm []byte) error {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return fmt.Errorf("%w: not a WebAssembly binary (bad magic)", ErrInvalidModule)
	}
	r := reader{b: wasm, i: 8}
	for r.i < len(r.b) {
		id := r.byte()
		size := r.u32()
		if r.err != nil || r.i+int(size) > len(r.b) {
			return nil
		}
		end := r.i + int(size)
		if id != 2 {
			r.i = end
			continue
		}
		n := r.u32()
		for k := uint32(0); k < n && r.err == nil; k++ {
			mod, field := r.name(), r.name()
			kind := r.byte()
			switch kind {
			case 0: // function: type index
				r.u32()
			case 1, 2, 3, 4:
				if r.err == nil {
					what := [...]string{1: "table", 2: "memory", 3: "global", 4: "tag"}[kind]
					return fmt.Errorf("%w: %s.%s is a %s import; plugins import functions only (the module exports its memory)", ErrForbiddenImport, mod, field, what)
				}
			default:
				return nil
			}
		}
		return nil
	}
	return nil
}

type reader struct {
	b   []byte
	i   int
	err error
}

var errShort = errors.New("truncated")

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.err = errShort
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errShort
	return 0
}

func (r *reader) name() string {
	n := int(r.u32())
	if r.err != nil || r.i+n > len(r.b) {
		r.err = errShort
		return ""
	}
	s := string(r.b[r.i : r.i+n])
	r.i += n
	return s
}

// inspect checks a compiled module against the ABI and runs it once to
// read its ABI version (after _initialize) and kinds.
func (e *Engine) inspect(ctx context.Context, t *tier, cm wazero.CompiledModule, sink *logSink) (Module, error) {
	var info Module
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		info.Imports = append(info.Imports, mod+"."+name)
		var want funcSig
		var ok bool
		switch mod {
		case abi.ImportModule:
			want, ok = hostImports[name]
		case abi.WASIModule:
			want, ok = t.wasi[name]
		}
		if !ok {
			if strings.HasPrefix(mod, "eddy_v") && mod != abi.ImportModule {
				return info, fmt.Errorf("%w: unknown import %s.%s: this broker speaks ABI v%d (%s.*)", ErrForbiddenImport, mod, name, abi.Major, abi.ImportModule)
			}
			return info, fmt.Errorf("%w: %s.%s; allowed: %s.{set_output,set_error,log} and %s.*", ErrForbiddenImport, mod, name, abi.ImportModule, abi.WASIModule)
		}
		if got := sigOf(def); got != want {
			return info, fmt.Errorf("%w: %s.%s has type %v, the ABI says %v", ErrForbiddenImport, mod, name, got, want)
		}
	}
	if len(cm.ImportedMemories()) > 0 {
		return info, fmt.Errorf("%w: the module imports its memory; it must export %q", ErrForbiddenImport, abi.ExportMemory)
	}
	slices.Sort(info.Imports)
	info.Imports = slices.Compact(info.Imports)

	exports := cm.ExportedFunctions()
	if _, ok := exports[abi.ExportStart]; ok {
		if _, ok := exports[abi.ExportInitialize]; !ok {
			return info, fmt.Errorf("%w: the module is a WASI command (exports %s); build a reactor (Go: -buildmode=c-shared)", ErrMissingExport, abi.ExportStart)
		}
	}
	if _, ok := cm.ExportedMemories()[abi.ExportMemory]; !ok {
		return info, fmt.Errorf("%w: %q (linear memory)", ErrMissingExport, abi.ExportMemory)
	}
	for name, want := range requiredExports {
		def, ok := exports[name]
		if !ok {
			return info, fmt.Errorf("%w: %s %v", ErrMissingExport, name, want)
		}
		if got := sigOf(def); got != want {
			return info, fmt.Errorf("%w: %s has type %v, the ABI says %v", ErrMissingExport, name, got, want)
		}
	}
	for name, want := range optionalExports {
		if def, ok := exports[name]; ok {
			if got := sigOf(def); got != want {
				return info, fmt.Errorf("%w: %s has type %v, the ABI says %v", ErrMissingExport, name, got, want)
			}
		}
	}
	has := func(name string) bool { _, ok := exports[name]; return ok }
	if has(abi.ExportPartition) {
		info.Kinds |= abi.KindPartitioner
	}
	if has(abi.ExportTransform) {
		info.Kinds |= abi.KindTransform
	}
	if has(abi.ExportCleanupSegment) != has(abi.ExportCleanupRecords) {
		return info, fmt.Errorf("%w: a cleanup plugin exports both %s and %s", ErrMissingExport, abi.ExportCleanupSegment, abi.ExportCleanupRecords)
	}
	if has(abi.ExportCleanupSegment) {
		info.Kinds |= abi.KindCleanup
	}

	// Run it once: _initialize, then eddy_abi_version and eddy_kinds.
	inst, err := newInstance(ctx, e, t, cm, nil, sink)
	if err != nil {
		return info, err
	}
	defer inst.close(ctx)
	ictx, cancel := context.WithTimeout(ctx, e.cfg.InitTimeout)
	defer cancel()
	info.ABIVersion = abi.Version(inst.abiVersion)
	if !info.ABIVersion.Compatible() {
		return info, fmt.Errorf("%w: the module speaks %v, this broker %v (same major, minor no newer)", ErrABIVersion, info.ABIVersion, abi.CurrentVersion)
	}
	if fn := inst.mod.ExportedFunction(abi.ExportKinds); fn != nil {
		if inst.interrupt != nil {
			inst.arm(ictx, e.cfg.InitTimeout)
		}
		res, err := fn.Call(ictx)
		if inst.interrupt != nil {
			inst.disarm()
		}
		if err != nil {
			return info, fmt.Errorf("%w: call %s: %w", ErrInstantiate, abi.ExportKinds, err)
		}
		info.Kinds &= abi.Kind(res[0])
	}
	if info.Kinds == 0 {
		return info, fmt.Errorf("%w: the module implements no plugin kind (export %s, %s or %s/%s)", ErrMissingExport,
			abi.ExportPartition, abi.ExportTransform, abi.ExportCleanupSegment, abi.ExportCleanupRecords)
	}
	return info, nil
}
