// Package abi is the contract between Eddy (the host) and its WebAssembly
// plugins (the guests): export and import names, the ABI version, status and
// decision codes, and the flat little-endian layouts both sides read and
// write in place. It imports the standard library only, so the broker's host
// and the Go guest SDK (sdk/plugin) share one definition.
//
// The layouts, with every offset relative to the start of the buffer:
//
//	RBV1 header (HeaderSize = 64 bytes)
//	  0  u32 magic            0x31564252 ("RBV1")
//	  4  u16 header_size      64 in v1.0; readers skip an unknown tail
//	  6  u16 abi_minor
//	  8  u32 record_count
//	 12  u8  stage            0 partition, 1 produce, 2 fetch, 3 federate, 4 cleanup
//	 13  u8  reserved
//	 14  u16 flags            bit0 records carry headers, bit1 offsets assigned
//	 16  u32 topic_off        20 u32 topic_len
//	 24  u32 partition        0xFFFFFFFF when not assigned
//	 28  u32 partition_count
//	 32  i64 base_offset      -1 when not assigned
//	 40  i64 now_ms           the only clock a plugin should use
//	 48  u32 records_off      start of the record table
//	 52  u32 total_len        == the buffer's length
//	 56  u64 reserved
//	record table: record_count entries of RecordSize (48) bytes
//	  0  u32 offset_delta     4 u32 attrs       8 i64 timestamp_ms
//	 16  u32 key_off         20 u32 key_len     (0xFFFFFFFF = null)
//	 24  u32 value_off       28 u32 value_len   (0xFFFFFFFF = null)
//	 32  u32 headers_off     36 u32 headers_count
//	 40  u32 source_index    44 u32 route
//	header table: HeaderEntrySize (16) bytes each
//	  0  u32 key_off  4 u32 key_len  8 u32 value_off  12 u32 value_len
//	data area: topic, keys, values and header bytes
//
// The same layout carries a transform's output (handed over with
// eddy_v1.set_output): there source_index names the input record an output
// record came from and route picks its destination. SegmentMeta (96 bytes)
// is the input of eddy_cleanup_segment; see segment.go.
//
// docs/PLUGIN-ABI.md is the normative text; this package implements it.
package abi

import "fmt"

// Version numbers of the ABI this package implements.
const (
	Major = 1
	Minor = 0
)

// Version is an ABI version as eddy_abi_version returns it: major<<16 | minor.
type Version uint32

// CurrentVersion is the version this package implements.
const CurrentVersion = Version(Major<<16 | Minor)

// MakeVersion packs a major and minor version.
func MakeVersion(major, minor uint16) Version { return Version(uint32(major)<<16 | uint32(minor)) }

// Major returns the major version.
func (v Version) Major() uint16 { return uint16(v >> 16) }

// Minor returns the minor version.
func (v Version) Minor() uint16 { return uint16(v) }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major(), v.Minor()) }

// Compatible reports whether a host implementing CurrentVersion runs a
// plugin built for v: same major, minor no newer than the host's.
func (v Version) Compatible() bool { return v.Major() == Major && v.Minor() <= Minor }

// Names of the exports a plugin provides.
const (
	ExportMemory          = "memory"
	ExportInitialize      = "_initialize"
	ExportStart           = "_start" // a WASI command; plugins must be reactors
	ExportABIVersion      = "eddy_abi_version"
	ExportAlloc           = "eddy_alloc"
	ExportFree            = "eddy_free"
	ExportInit            = "eddy_init"
	ExportKinds           = "eddy_kinds" // optional: narrows the kinds a module's exports announce
	ExportPartition       = "eddy_partition"
	ExportTransform       = "eddy_transform"
	ExportCleanupSegment  = "eddy_cleanup_segment"
	ExportCleanupRecords  = "eddy_cleanup_records"
	ImportModule          = "eddy_v1"
	ImportSetOutput       = "set_output"
	ImportSetError        = "set_error"
	ImportLog             = "log"
	WASIModule            = "wasi_snapshot_preview1"
	MaxModuleBytes        = 16 << 20 // the default module size cap
	MaxErrorMessageBytes  = 1 << 10  // set_error messages are cut to this
	MaxLogLineBytes       = 1 << 10  // log lines are cut to this
	DefaultMaxRecords     = 4096     // records per call; larger batches are split
	DefaultMaxInputBytes  = 1 << 20  // RBV1 bytes per call; larger batches are split
	DefaultMaxOutputBytes = 4 << 20  // set_output bytes per call
	MaxOutputFactor       = 4        // output records per input record, at most
	MaxRoutes             = 8        // routes a transform use may configure
)

// Kind is a set of plugin kinds; a module holds a kind when it exports the
// kind's function(s).
type Kind uint8

// The plugin kinds.
const (
	KindPartitioner Kind = 1 << iota
	KindTransform
	KindCleanup
)

func (k Kind) String() string {
	if k == 0 {
		return "none"
	}
	s := ""
	add := func(name string) {
		if s != "" {
			s += ","
		}
		s += name
	}
	if k&KindPartitioner != 0 {
		add("partitioner")
	}
	if k&KindTransform != 0 {
		add("transform")
	}
	if k&KindCleanup != 0 {
		add("cleanup")
	}
	if rest := k &^ (KindPartitioner | KindTransform | KindCleanup); rest != 0 {
		add(fmt.Sprintf("kind(%#x)", uint8(rest)))
	}
	return s
}

// Status is what a kind export returns: >= 0 is success (records processed
// or emitted), a negative value is one of the error codes.
type Status int32

// Error statuses.
const (
	StatusPlugin Status = -1 // ERR_PLUGIN: user logic error, see set_error
	StatusInput  Status = -2 // ERR_INPUT: unsupported header or version
	StatusNoMem  Status = -3 // ERR_NOMEM
	StatusConfig Status = -4 // ERR_CONFIG
	StatusRetry  Status = -5 // ERR_RETRY: transient; the host may retry once on a fresh instance
)

func (s Status) String() string {
	switch s {
	case StatusPlugin:
		return "ERR_PLUGIN"
	case StatusInput:
		return "ERR_INPUT"
	case StatusNoMem:
		return "ERR_NOMEM"
	case StatusConfig:
		return "ERR_CONFIG"
	case StatusRetry:
		return "ERR_RETRY"
	}
	if s >= 0 {
		return fmt.Sprintf("ok(%d)", int32(s))
	}
	return fmt.Sprintf("status(%d)", int32(s))
}

// Stage says where in the broker a call happens; it is byte 12 of RBV1.
type Stage uint8

// The stages.
const (
	StagePartition Stage = iota
	StageProduce
	StageFetch
	StageFederate
	StageCleanup
)

func (s Stage) String() string {
	switch s {
	case StagePartition:
		return "partition"
	case StageProduce:
		return "produce"
	case StageFetch:
		return "fetch"
	case StageFederate:
		return "federate"
	case StageCleanup:
		return "cleanup"
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// Partitioner output values besides 0..N-1.
const (
	PartitionDefault uint32 = 0xFFFFFFFF // use the built-in (Kafka murmur2) partitioner
	PartitionReject  uint32 = 0xFFFFFFFE // reject this record
)

// Decision is a transform's verdict on one input record (one byte each at
// out_ptr).
type Decision uint8

// Transform decisions.
const (
	Drop     Decision = 0 // the original record is not kept
	Keep     Decision = 1 // the original record is kept unchanged (zero copy)
	Replaced Decision = 2 // output records with this source_index stand in its place
	Reject   Decision = 3 // the whole batch is refused (INVALID_RECORD naming this record)
)

func (d Decision) String() string {
	switch d {
	case Drop:
		return "drop"
	case Keep:
		return "keep"
	case Replaced:
		return "replaced"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
}

// Valid reports whether d is a known transform decision.
func (d Decision) Valid() bool { return d <= Reject }

// SegmentDecision is eddy_cleanup_segment's verdict on a whole segment.
type SegmentDecision int32

// Segment decisions.
const (
	SegmentDefault SegmentDecision = 0 // the built-in policy decides
	SegmentKeep    SegmentDecision = 1
	SegmentDelete  SegmentDecision = 2
	SegmentRewrite SegmentDecision = 3 // run the records pass
)

func (d SegmentDecision) String() string {
	switch d {
	case SegmentDefault:
		return "default"
	case SegmentKeep:
		return "keep"
	case SegmentDelete:
		return "delete"
	case SegmentRewrite:
		return "rewrite"
	}
	return fmt.Sprintf("segment-decision(%d)", int32(d))
}

// Valid reports whether d is a known segment decision.
func (d SegmentDecision) Valid() bool { return d >= SegmentDefault && d <= SegmentRewrite }

// KeepDecision is eddy_cleanup_records' verdict on one record (one byte
// each at out_ptr).
type KeepDecision uint8

// Record decisions of the cleanup records pass.
const (
	CleanupDefault KeepDecision = 0 // Kafka compaction semantics
	CleanupKeep    KeepDecision = 1
	CleanupDrop    KeepDecision = 2
)

func (k KeepDecision) String() string {
	switch k {
	case CleanupDefault:
		return "default"
	case CleanupKeep:
		return "keep"
	case CleanupDrop:
		return "drop"
	}
	return fmt.Sprintf("keep-decision(%d)", uint8(k))
}

// Valid reports whether k is a known records-pass decision.
func (k KeepDecision) Valid() bool { return k <= CleanupDrop }

// Log levels of eddy_v1.log.
type LogLevel uint32

// The log levels.
const (
	LogDebug LogLevel = 0
	LogInfo  LogLevel = 1
	LogWarn  LogLevel = 2
	LogError LogLevel = 3
)

func (l LogLevel) String() string {
	switch l {
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	}
	return fmt.Sprintf("level(%d)", uint32(l))
}
