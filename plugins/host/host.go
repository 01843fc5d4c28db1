// Package host is the broker's side of Eddy's WebAssembly plugins: it
// registers modules and runs partitioners, produce/fetch/federation
// transforms and log-cleanup policies over Kafka RecordBatch v2 bytes.
//
// The sandbox itself (wazero runtimes, registry, instance pools, guards,
// memory caps, circuit breakers, log capture, output validation) is package
// plugins/host/sandbox, which speaks the ABI's RBV1 buffers; this package
// decodes batches into RBV1 (decompressing them, splitting them into calls
// of at most 4,096 records and 1 MiB), and turns a transform's decisions
// back into a RecordBatch v2.
//
// Typical use by the broker:
//
//	h, _ := host.New(host.Config{Config: sandbox.Config{CacheDir: dir}})
//	mod, _ := h.Register(ctx, wasm)                       // at registration, compiles
//	p, _ := h.Partitioner(ctx, mod.Digest, cfg, host.CallOptions{Topic: "t"}) // at binding, runs eddy_init
//	parts, err := p.Partition(ctx, batch, 12)             // on the produce path
//
// Errors of a call are *sandbox.CallError values; test them with errors.Is
// against ErrTimeout, ErrTrap, ErrInvalidOutput, ErrStatus, ErrCircuitOpen
// and friends to apply the topic's plugin.<stage>.on.error policy.
package host

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/internal/bufpool"
	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
)

// Names from the sandbox, so callers need one import.
type (
	Digest     = sandbox.Digest
	Module     = sandbox.Module
	Status     = sandbox.Status
	PoolStatus = sandbox.PoolStatus
	Counters   = sandbox.Counters
	LogLine    = sandbox.LogLine
	CallError  = sandbox.CallError
	State      = sandbox.State
)

// Errors, see package sandbox.
var (
	ErrModuleTooLarge  = sandbox.ErrModuleTooLarge
	ErrInvalidModule   = sandbox.ErrInvalidModule
	ErrForbiddenImport = sandbox.ErrForbiddenImport
	ErrMissingExport   = sandbox.ErrMissingExport
	ErrABIVersion      = sandbox.ErrABIVersion
	ErrUnknownModule   = sandbox.ErrUnknownModule
	ErrKind            = sandbox.ErrKind
	ErrConfig          = sandbox.ErrConfig
	ErrCircuitOpen     = sandbox.ErrCircuitOpen
	ErrTimeout         = sandbox.ErrTimeout
	ErrTrap            = sandbox.ErrTrap
	ErrStatus          = sandbox.ErrStatus
	ErrInvalidOutput   = sandbox.ErrInvalidOutput
	ErrInstantiate     = sandbox.ErrInstantiate
	ErrClosed          = sandbox.ErrClosed
	// ErrBatch says the input is not a usable RecordBatch v2.
	ErrBatch = errors.New("host: bad record batch")
)

// ParseDigest reads "sha256:<hex>".
func ParseDigest(s string) (Digest, error) { return sandbox.ParseDigest(s) }

// Config configures a Host.
type Config struct {
	sandbox.Config
	// MaxBatchRecords splits batches into calls of at most this many
	// records (4,096).
	MaxBatchRecords int
	// MaxInputBytes splits batches so that each call's RBV1 input stays
	// under this size (1 MiB), unless one record alone is larger.
	MaxInputBytes int
	// MaxUncompressed bounds a decompressed batch (record.DefaultMaxUncompressed).
	MaxUncompressed int
}

// Host runs plugins over record batches. Its sandbox methods (Register,
// Module, Modules, Remove, Status, Logs, Close) are promoted from
// *sandbox.Engine.
type Host struct {
	*sandbox.Engine
	cfg   Config
	decs  sync.Pool // *decoded
	encs  sync.Pool // *abi.BlockEncoder
	outs  *bufpool.Pool
	clock func() time.Time
}

// New creates a Host.
func New(cfg Config) (*Host, error) {
	if cfg.MaxBatchRecords <= 0 {
		cfg.MaxBatchRecords = abi.DefaultMaxRecords
	}
	if cfg.MaxInputBytes <= 0 {
		cfg.MaxInputBytes = abi.DefaultMaxInputBytes
	}
	e, err := sandbox.New(cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("start plugin host: %w", err)
	}
	cfg.Config = e.Config()
	return &Host{Engine: e, cfg: cfg, clock: cfg.Now, outs: bufpool.New(minPooledOutput)}, nil
}

// HostConfig returns the configuration with defaults filled in.
func (h *Host) HostConfig() Config { return h.cfg }

// CallOptions configure one use of a plugin (a topic binding).
type CallOptions struct {
	// Topic is the topic name handed to the plugin.
	Topic string
	// Stage is the transform stage: StageProduce (the default),
	// StageFetch or StageFederate. Other kinds ignore it.
	Stage abi.Stage
	// Timeout overrides the stage's default deadline per call.
	Timeout time.Duration
	// MemoryLimitBytes overrides the memory cap per instance.
	MemoryLimitBytes uint64
	// Trusted runs without termination checks (no deadline enforcement).
	Trusted bool
	// Routes is the number of routes configured for a transform (0-8).
	Routes int
	// MaxRecordBytes bounds each record a transform emits (the topic's
	// max.message.bytes); 0 means no bound beyond the output cap.
	MaxRecordBytes int
}

func (h *Host) bind(ctx context.Context, d Digest, kind abi.Kind, config []byte, o CallOptions, stage abi.Stage) (*sandbox.Pool, time.Duration, error) {
	if o.Routes < 0 || o.Routes > abi.MaxRoutes {
		return nil, 0, fmt.Errorf("bind plugin %s: %d routes, at most %d", d.Short(), o.Routes, abi.MaxRoutes)
	}
	p, err := h.Engine.Pool(ctx, d, kind, config, sandbox.PoolOptions{Trusted: o.Trusted, MemoryLimitBytes: o.MemoryLimitBytes})
	if err != nil {
		return nil, 0, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = h.cfg.Timeouts.For(stage)
	}
	return p, timeout, nil
}

// decoded is a batch's records, decoded once: their fields' positions
// in data, the batch's records section or its decompressed copy.
type decoded struct {
	b    record.Batch
	data []byte
	recs []record.Fields
}

func (h *Host) decode(batch []byte) (*decoded, error) {
	b, err := checkBatch(batch)
	if err != nil {
		return nil, err
	}
	data, err := b.Data(h.cfg.MaxUncompressed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBatch, err)
	}
	d, _ := h.decs.Get().(*decoded)
	if d == nil {
		d = &decoded{}
	}
	d.b, d.data, d.recs = b, data, d.recs[:0]
	err = b.EachFieldsIn(data, func(f *record.Fields) error {
		d.recs = append(d.recs, *f)
		return nil
	})
	if err != nil {
		h.release(d)
		return nil, fmt.Errorf("%w: %w", ErrBatch, err)
	}
	return d, nil
}

func (h *Host) release(d *decoded) {
	d.b, d.data = nil, nil
	h.decs.Put(d)
}

var empty = []byte{}

func strBytes(s string) []byte {
	if len(s) == 0 {
		return empty
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// chunker feeds records to fn in RBV1 buffers of at most MaxBatchRecords
// records and MaxInputBytes bytes. The buffers are BlockEncoders over the
// batch's records section: each call copies the section's bytes its
// records span once, whole.
type chunker struct {
	h     *Host
	enc   *abi.BlockEncoder
	fn    func(enc *abi.BlockEncoder, first int) error
	attrs func(i int) uint32
	data  []byte
	ts    int64 // the batch's base timestamp
	first int
}

func (h *Host) chunker(hdr abi.Header, b record.Batch, data []byte, attrs func(i int) uint32, fn func(enc *abi.BlockEncoder, first int) error) *chunker {
	enc, _ := h.encs.Get().(*abi.BlockEncoder)
	if enc == nil {
		enc = &abi.BlockEncoder{}
	}
	enc.Reset(hdr, data)
	return &chunker{h: h, enc: enc, fn: fn, attrs: attrs, data: data, ts: b.BaseTimestamp()}
}

// add adds record i, whose fields f are positions in c.data; the data
// area takes in its whole encoding, so a chunk's data area is exactly its
// records' bytes and its size is known before a record is added.
func (c *chunker) add(i int, f *record.Fields) error {
	enc := c.enc
	if enc.Len() > 0 && (enc.Len() >= c.h.cfg.MaxBatchRecords || enc.SizeWith(f.End-f.At, f.HeaderCount) > c.h.cfg.MaxInputBytes) {
		if err := c.fn(enc, c.first); err != nil {
			return err
		}
		enc.Restart()
		c.first = i
	}
	a := uint32(uint8(f.Attributes))
	if f.Value.Len < 0 {
		a |= abi.AttrTombstone
	}
	if c.attrs != nil {
		a |= c.attrs(i)
	}
	if f.HeaderCount > 0 {
		if h := enc.Header(); h.Flags&abi.FlagHeaders == 0 {
			h.Flags |= abi.FlagHeaders
			enc.SetHeader(h)
		}
	}
	data := c.data
	enc.Cover(data[f.At:f.End])
	enc.AddRecord(uint32(f.OffsetDelta), a, c.ts+f.TimestampDelta, f.Key.In(data), f.Value.In(data), uint32(i-c.first))
	for j, p := 0, f.Headers; j < f.HeaderCount; j++ {
		var k, v record.Span
		k, v, p = record.NextHeader(data, p)
		enc.AddHeader(k.In(data), v.In(data))
	}
	return nil
}

// finish hands over the last chunk (an empty one when the batch had no
// records) and releases the encoder.
func (c *chunker) finish(total int) error {
	defer c.release()
	if c.enc.Len() > 0 || total == 0 {
		return c.fn(c.enc, c.first)
	}
	return nil
}

// release returns the encoder to the pool, dropping its reference to the
// batch.
func (c *chunker) release() {
	c.enc.Reset(abi.Header{}, nil)
	c.h.encs.Put(c.enc)
}

// chunks feeds the records of d to fn in chunks (see chunker); first is
// the index of the chunk's first record.
func (h *Host) chunks(d *decoded, hdr abi.Header, attrs func(i int) uint32, fn func(enc *abi.BlockEncoder, first int) error) error {
	c := h.chunker(hdr, d.b, d.data, attrs, fn)
	for i := range d.recs {
		if err := c.add(i, &d.recs[i]); err != nil {
			c.release()
			return err
		}
	}
	return c.finish(len(d.recs))
}

func (h *Host) header(stage abi.Stage, topic string, partition, count int32, b record.Batch, assigned bool) abi.Header {
	hdr := abi.Header{Stage: stage, Topic: strBytes(topic), Partition: abi.Unassigned, PartitionCount: uint32(max(count, 0)), BaseOffset: -1, NowMs: h.clock().UnixMilli()}
	if partition >= 0 {
		hdr.Partition = uint32(partition)
	}
	if assigned {
		hdr.Flags |= abi.FlagOffsetsAssigned
		hdr.BaseOffset = b.BaseOffset()
	}
	return hdr
}

// checkBatch checks the fixed part of a RecordBatch v2.
func checkBatch(batch []byte) (record.Batch, error) {
	if len(batch) < record.HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a batch header", ErrBatch, len(batch))
	}
	b := record.Batch(batch)
	if b.Magic() != 2 || b.Size() != len(batch) {
		return nil, fmt.Errorf("%w: magic %d, declared size %d of %d bytes", ErrBatch, b.Magic(), b.Size(), len(batch))
	}
	return b, nil
}

// stream decodes batch and feeds its records straight into chunks (see
// chunker), for the kinds that need nothing of the records afterwards.
func (h *Host) stream(batch []byte, hdr func(record.Batch) abi.Header, attrs func(i int) uint32, fn func(enc *abi.BlockEncoder, first int) error) (int, error) {
	b, err := checkBatch(batch)
	if err != nil {
		return 0, err
	}
	data, err := b.Data(h.cfg.MaxUncompressed)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBatch, err)
	}
	c := h.chunker(hdr(b), b, data, attrs, fn)
	i := 0
	err = b.EachFieldsIn(data, func(f *record.Fields) error {
		err := c.add(i, f)
		i++
		return err
	})
	if err != nil {
		c.release()
		var ce *sandbox.CallError
		if errors.As(err, &ce) {
			return 0, err
		}
		if errors.Is(err, record.ErrInvalid) || errors.Is(err, record.ErrCorrupt) {
			return 0, fmt.Errorf("%w: %w", ErrBatch, err)
		}
		return 0, err
	}
	if err := c.finish(i); err != nil {
		return 0, err
	}
	return i, nil
}

// BuiltinPartition is the partitioner PartitionDefault selects: Kafka's
// murmur2 of the key. ok is false for a null key, which Kafka places by
// its sticky (or round-robin) rule, the caller's choice.
func BuiltinPartition(key []byte, n int32) (p int32, ok bool) {
	if key == nil || n <= 0 {
		return 0, false
	}
	return abi.KafkaPartition(key, n), true
}

// Partitioner runs a partitioner plugin for one use.
type Partitioner struct {
	h       *Host
	pool    *sandbox.Pool
	o       CallOptions
	timeout time.Duration
}

// Partitioner binds the partitioner of module d with config (handed to
// eddy_init; a refusal fails here with ErrConfig).
func (h *Host) Partitioner(ctx context.Context, d Digest, config []byte, o CallOptions) (*Partitioner, error) {
	pool, timeout, err := h.bind(ctx, d, abi.KindPartitioner, config, o, abi.StagePartition)
	if err != nil {
		return nil, err
	}
	return &Partitioner{h: h, pool: pool, o: o, timeout: timeout}, nil
}

// Status returns the state of this use's pool.
func (p *Partitioner) Status() PoolStatus { return p.pool.Status() }

// Partition returns a partition for each record of batch (a RecordBatch
// v2, possibly compressed): 0..numPartitions-1, PartitionDefault (-1: the
// caller applies BuiltinPartition) or PartitionReject (-2).
func (p *Partitioner) Partition(ctx context.Context, batch []byte, numPartitions int32) ([]int32, error) {
	if numPartitions <= 0 {
		return nil, fmt.Errorf("partition: %d partitions", numPartitions)
	}
	var out, buf []int32
	hdr := func(b record.Batch) abi.Header {
		out = make([]int32, 0, max(b.RecordCount(), 0))
		return p.h.header(abi.StagePartition, p.o.Topic, -1, numPartitions, b, false)
	}
	_, err := p.h.stream(batch, hdr, nil, func(enc *abi.BlockEncoder, _ int) error {
		var err error
		buf, err = p.pool.Partition(ctx, p.timeout, enc, buf)
		out = append(out, buf...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Values of a Partition result besides 0..N-1.
const (
	PartitionDefault int32 = -1
	PartitionReject  int32 = -2
)
