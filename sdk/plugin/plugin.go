// Package plugin is the Go guest SDK for Eddy plugins: partitioners,
// filters/transforms and log-cleanup policies compiled to WebAssembly and
// run by the broker in a sandbox (docs/PLUGINS.md, docs/PLUGIN-ABI.md).
//
// A plugin is a reactor built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// Its main package registers handlers from init and has an empty main:
//
//	func init() {
//		plugin.Partitioner(func(r plugin.Record, n int32) (int32, error) {
//			return plugin.KafkaPartition(r.Key(), n), nil
//		})
//	}
//
//	func main() {}
//
// The SDK owns the ABI exports (eddy_alloc, eddy_partition, ...), reads the
// host's record batch in place (Record's slices alias the call's input and
// are valid only during the handler call), collects rewritten records, and
// turns a handler's error or panic into ERR_PLUGIN with the message handed
// to the host through eddy_v1.set_error, so a bug does not take the
// instance down with it.
//
// Instances are disposable: the host may create, recycle or discard one at
// any time, so a plugin keeps no state across calls beyond what it derives
// from its configuration (OnInit). Time comes from Batch.NowMs; a guest's
// own clock is fake.
//
// Everything except the few lines of WebAssembly glue builds on every
// platform, so the decoding and dispatch are unit-tested natively.
package plugin

import (
	"errors"
	"fmt"
	"iter"

	"github.com/eddybroker/eddy/plugins/abi"
)

// Partitioner results besides 0..n-1.
const (
	// DefaultPartition asks the host to use its built-in partitioner
	// (Kafka's murmur2 of the key).
	DefaultPartition int32 = -1
	// RejectRecord refuses the record.
	RejectRecord int32 = -2
)

// Decision is a transform's verdict on one record.
type Decision = abi.Decision

// Transform decisions.
const (
	Drop    = abi.Drop     // the record is not kept
	Keep    = abi.Keep     // the record is kept unchanged (zero copy)
	Replace = abi.Replaced // the records written for it stand in its place
	Reject  = abi.Reject   // the whole batch is refused (INVALID_RECORD)
)

// SegmentMeta describes a closed segment to a cleanup policy.
type SegmentMeta = abi.SegmentMeta

// SegmentDecision is a cleanup policy's verdict on a segment.
type SegmentDecision = abi.SegmentDecision

// Segment decisions.
const (
	SegmentDefault = abi.SegmentDefault // the built-in retention decides
	SegmentKeep    = abi.SegmentKeep
	SegmentDelete  = abi.SegmentDelete
	SegmentRewrite = abi.SegmentRewrite // run the records pass
)

// KeepDecision is a cleanup policy's verdict on one record.
type KeepDecision = abi.KeepDecision

// Records-pass decisions.
const (
	CleanupDefault = abi.CleanupDefault // Kafka compaction semantics
	CleanupKeep    = abi.CleanupKeep
	CleanupDrop    = abi.CleanupDrop
)

// Errors a handler may return (wrapped) to choose the status code.
var (
	// ErrRetry marks a transient failure: the host may retry once on a
	// fresh instance.
	ErrRetry = errors.New("plugin: transient failure")
	// ErrConfig marks a configuration problem (ERR_CONFIG).
	ErrConfig = errors.New("plugin: bad configuration")
)

// Error codes the SDK passes to eddy_v1.set_error. An error with a method
// ErrorCode() uint32 passes its own code instead.
const (
	CodeError uint32 = 1 // a handler returned an error
	CodePanic uint32 = 2 // a handler panicked
)

// Batch is the call's input: one RBV1 buffer.
type Batch struct {
	v abi.View
}

// Len returns the number of records.
func (b *Batch) Len() int { return b.v.Len() }

// Record returns the i-th record.
func (b *Batch) Record(i int) Record { return Record{b: b, i: i} }

// All iterates over the records.
func (b *Batch) All() iter.Seq[Record] {
	return func(yield func(Record) bool) {
		for i := 0; i < b.Len(); i++ {
			if !yield(b.Record(i)) {
				return
			}
		}
	}
}

// Topic returns the topic name.
func (b *Batch) Topic() string { return string(b.v.Topic()) }

// Stage returns where in the broker the call happens.
func (b *Batch) Stage() abi.Stage { return b.v.Stage() }

// Partition returns the partition, -1 when not yet assigned.
func (b *Batch) Partition() int32 {
	if p := b.v.Partition(); p != abi.Unassigned {
		return int32(p)
	}
	return -1
}

// PartitionCount returns the destination topic's partition count.
func (b *Batch) PartitionCount() int32 { return int32(b.v.PartitionCount()) }

// BaseOffset returns the offset of the first record, -1 when not assigned.
func (b *Batch) BaseOffset() int64 { return b.v.BaseOffset() }

// NowMs returns the broker's wall clock for this call in Unix milliseconds:
// the clock plugins use (a guest's own clock is fake).
func (b *Batch) NowMs() int64 { return b.v.NowMs() }

// Record is one record of the input, read in place. It is two words, so
// handing it to a handler costs little (arguments travel through memory in
// Go compiled to WebAssembly).
type Record struct {
	b *Batch
	i int
}

// v returns the record's entry in the input.
func (r Record) v() abi.RecordView { return r.b.v.Record(r.i) }

// Index returns the record's position in the batch.
func (r Record) Index() int { return r.i }

// Batch returns the batch the record belongs to.
func (r Record) Batch() *Batch { return r.b }

// Key returns the key, nil when null. It aliases the input.
func (r Record) Key() []byte { return r.v().Key() }

// Value returns the value, nil when null. It aliases the input.
func (r Record) Value() []byte { return r.v().Value() }

// Timestamp returns the timestamp in Unix milliseconds.
func (r Record) Timestamp() int64 { return r.v().Timestamp() }

// Offset returns the record's offset, -1 when offsets are not yet assigned
// (produce path, partitioners).
func (r Record) Offset() int64 {
	if r.b.v.Flags()&abi.FlagOffsetsAssigned == 0 {
		return -1
	}
	return r.b.v.BaseOffset() + int64(r.v().OffsetDelta())
}

// Attrs returns the Kafka record attributes plus the host bits.
func (r Record) Attrs() uint32 { return r.v().Attrs() }

// IsTombstone reports whether the value is null.
func (r Record) IsTombstone() bool { return r.v().ValueIsNull() }

// IsLatestForKey reports, in a cleanup records pass, whether this is the
// latest record for its key.
func (r Record) IsLatestForKey() bool { return r.v().Attrs()&abi.AttrLatestForKey != 0 }

// HeaderCount returns the number of headers.
func (r Record) HeaderCount() int { return r.v().HeaderCount() }

// HeaderAt returns the i-th header; a null value is nil.
func (r Record) HeaderAt(i int) (key, value []byte) { return r.v().Header(i) }

// Headers iterates over the headers in order.
func (r Record) Headers() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for i := 0; i < r.v().HeaderCount(); i++ {
			if !yield(r.v().Header(i)) {
				return
			}
		}
	}
}

// Header returns the value of the first header named key.
func (r Record) Header(key string) ([]byte, bool) {
	for i := 0; i < r.v().HeaderCount(); i++ {
		if k, v := r.v().Header(i); string(k) == key {
			return v, true
		}
	}
	return nil, false
}

// Output returns a copy of the record as an Output (its slices alias the
// input), ready to be changed and written.
func (r Record) Output() Output {
	o := Output{Key: r.Key(), Value: r.Value(), Timestamp: r.Timestamp()}
	for i := 0; i < r.v().HeaderCount(); i++ {
		k, v := r.v().Header(i)
		o.Headers = append(o.Headers, Header{Key: k, Value: v})
	}
	return o
}

// Header is one record header; a nil Value is null.
type Header struct {
	Key, Value []byte
}

// Output is a record a transform writes. Nil Key or Value are null.
type Output struct {
	Key, Value []byte
	Headers    []Header
	Timestamp  int64
	// Route picks the destination: 0 is the default (the topic itself),
	// k the k-th route configured for this use.
	Route int
}

// Writer collects the records a transform emits for the current input
// record. Records written for a record the handler Keeps or Drops go out in
// addition to it (fan-out, for instance to a route); for a Replace they
// stand in its place and at least one is required.
type Writer struct {
	enc   abi.Encoder
	index int
	count int // records written for the current input record
	kvs   []abi.KV
	arena arena
}

// arena hands out byte slices valid until the end of the call, reusing its
// chunks across calls, so rewriting values does not feed the garbage
// collector.
type arena struct {
	chunks [][]byte
	cur    int // index of the chunk in use
	off    int // bytes used in it
}

const arenaChunk = 64 << 10

func (a *arena) reset() { a.cur, a.off = 0, 0 }

func (a *arena) alloc(n int) []byte {
	if n > arenaChunk/4 {
		return make([]byte, n)
	}
	for {
		if a.cur == len(a.chunks) {
			a.chunks = append(a.chunks, make([]byte, arenaChunk))
		}
		if c := a.chunks[a.cur]; a.off+n <= len(c) {
			b := c[a.off : a.off+n : a.off+n]
			a.off += n
			return b
		}
		a.cur, a.off = a.cur+1, 0
	}
}

// Alloc returns n bytes that stay valid until the transform call ends,
// for building replacement keys and values without garbage.
func (w *Writer) Alloc(n int) []byte { return w.arena.alloc(n) }

// WriteWithValue emits r with its value replaced (key, headers and
// timestamp kept) to the default route. value must stay valid until the
// handler returns (Alloc'd or input bytes qualify).
func (w *Writer) WriteWithValue(r Record, value []byte) {
	w.kvs = w.kvs[:0]
	for i := 0; i < r.v().HeaderCount(); i++ {
		k, v := r.v().Header(i)
		w.kvs = append(w.kvs, abi.KV{Key: k, Value: v})
	}
	w.enc.Add(abi.Entry{Timestamp: r.Timestamp(), Key: r.Key(), Value: value, Headers: w.kvs, SourceIndex: uint32(w.index)})
	w.count++
}

// Write emits o after the records already written. Its slices must stay
// valid until the handler returns; slices of the input qualify.
func (w *Writer) Write(o Output) {
	w.kvs = w.kvs[:0]
	for _, h := range o.Headers {
		w.kvs = append(w.kvs, abi.KV{Key: h.Key, Value: h.Value})
	}
	w.enc.Add(abi.Entry{Timestamp: o.Timestamp, Key: o.Key, Value: o.Value, Headers: w.kvs, SourceIndex: uint32(w.index), Route: uint32(o.Route)})
	w.count++
}

// Level is a log level.
type Level = abi.LogLevel

// The log levels.
const (
	LevelDebug = abi.LogDebug
	LevelInfo  = abi.LogInfo
	LevelWarn  = abi.LogWarn
	LevelError = abi.LogError
)

// Log sends a line to the broker's log for this plugin (rate-limited and
// cut to 1 KiB by the host).
func Log(level Level, msg string) { hostLog(uint32(level), []byte(msg)) }

// Logf formats and logs a line.
func Logf(level Level, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }

// Murmur2 is Kafka's murmur2 hash.
func Murmur2(b []byte) int32 { return abi.Murmur2(b) }

// KafkaPartition maps a key to one of n partitions exactly as Kafka's
// default partitioner does; a null key gets DefaultPartition.
func KafkaPartition(key []byte, n int32) int32 {
	if key == nil || n <= 0 {
		return DefaultPartition
	}
	// abi.KafkaPartition spelled out, so that this function inlines and
	// a partitioner makes one call per record, to Murmur2: calls are the
	// dearest instructions of Go compiled to WebAssembly.
	return int32(uint32(abi.Murmur2(key))&0x7fffffff) % n
}
