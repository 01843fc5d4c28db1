//go:build wasip1

package plugin

import (
	"unsafe"

	"github.com/eddybroker/eddy/plugins/abi"
)

// The WebAssembly glue: ABI exports and eddy_v1 imports. Everything else
// in the package builds on every platform.

//go:wasmimport eddy_v1 set_output
func setOutput(ptr unsafe.Pointer, n uint32)

//go:wasmimport eddy_v1 set_error
func setError(code uint32, ptr unsafe.Pointer, n uint32)

//go:wasmimport eddy_v1 log
func logLine(level uint32, ptr unsafe.Pointer, n uint32)

func hostSetOutput(b []byte) { setOutput(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))) }

func hostSetError(code uint32, msg []byte) {
	setError(code, unsafe.Pointer(unsafe.SliceData(msg)), uint32(len(msg)))
}

func hostLog(level uint32, msg []byte) {
	logLine(level, unsafe.Pointer(unsafe.SliceData(msg)), uint32(len(msg)))
}

func bytesAt(p unsafe.Pointer, n uint32) []byte { return unsafe.Slice((*byte)(p), n) }

//go:wasmexport eddy_abi_version
func eddyABIVersion() uint32 { return uint32(abi.CurrentVersion) }

//go:wasmexport eddy_kinds
func eddyKinds() uint32 { return kinds() }

// pinned keeps every buffer handed out by eddy_alloc reachable, so the Go
// garbage collector never frees memory the host writes into.
var pinned = map[uintptr][]byte{}

//go:wasmexport eddy_alloc
func eddyAlloc(size uint32) unsafe.Pointer {
	b := make([]byte, max(size, 8))
	p := unsafe.Pointer(unsafe.SliceData(b))
	pinned[uintptr(p)] = b
	return p
}

//go:wasmexport eddy_free
func eddyFree(p unsafe.Pointer) { delete(pinned, uintptr(p)) }

//go:wasmexport eddy_init
func eddyInit(cfg unsafe.Pointer, n uint32) int32 { return doInit(bytesAt(cfg, n)) }

//go:wasmexport eddy_partition
func eddyPartition(in unsafe.Pointer, n uint32, out unsafe.Pointer) int32 {
	return doPartition(bytesAt(in, n), func(k int) []byte { return bytesAt(out, uint32(k)) })
}

//go:wasmexport eddy_transform
func eddyTransform(in unsafe.Pointer, n uint32, out unsafe.Pointer) int32 {
	return doTransform(bytesAt(in, n), func(k int) []byte { return bytesAt(out, uint32(k)) })
}

//go:wasmexport eddy_cleanup_segment
func eddyCleanupSegment(meta unsafe.Pointer, n uint32) int32 {
	return doCleanupSegment(bytesAt(meta, n))
}

//go:wasmexport eddy_cleanup_records
func eddyCleanupRecords(in unsafe.Pointer, n uint32, out unsafe.Pointer) int32 {
	return doCleanupRecords(bytesAt(in, n), func(k int) []byte { return bytesAt(out, uint32(k)) })
}
