// Package plugintest runs a plugin's .wasm through the broker's real
// sandbox (plugins/host/sandbox: the same validation, limits, guards and
// output checks) over batches a test describes, so plugin authors test
// without a broker:
//
//	func TestMyPartitioner(t *testing.T) {
//		p := plugintest.Load(t, plugintest.BuildGo(t, "."))
//		parts, err := p.Partition(plugintest.Batch{PartitionCount: 12,
//			Records: []plugintest.Rec{plugintest.KV("k1", "v1")}}, nil)
//		...
//	}
//
// Batches are described record by record and encoded in the ABI's RBV1
// layout; outputs are decoded back into Go values. BuildGo and
// BuildAssemblyScript compile plugin sources on the fly.
package plugintest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
)

// Header is a record header; a nil Value is null.
type Header struct {
	Key   string
	Value []byte
}

// Rec is a record of an input batch. Nil Key or Value are null.
type Rec struct {
	Key, Value []byte
	Headers    []Header
	Timestamp  int64
	// Latest marks the record as the latest for its key (cleanup records
	// pass).
	Latest bool
}

// KV returns a record with a key and a value.
func KV(key, value string) Rec { return Rec{Key: []byte(key), Value: []byte(value)} }

// Batch describes one call's input.
type Batch struct {
	Topic          string
	Partition      int32 // used when Assigned; otherwise the partition is unassigned
	PartitionCount int32
	BaseOffset     int64 // used when Assigned
	Assigned       bool  // partition and offsets are assigned (fetch, federate, cleanup)
	NowMs          int64
	Records        []Rec
}

// Encode returns the RBV1 encoder of b for stage s.
func (b Batch) Encode(s abi.Stage) *abi.Encoder {
	h := abi.Header{Stage: s, Topic: []byte(b.Topic), Partition: abi.Unassigned, PartitionCount: uint32(max(b.PartitionCount, 0)), BaseOffset: -1, NowMs: b.NowMs}
	if b.Assigned {
		h.Flags |= abi.FlagOffsetsAssigned
		h.BaseOffset = b.BaseOffset
		h.Partition = uint32(b.Partition)
	}
	var e abi.Encoder
	for _, r := range b.Records {
		if len(r.Headers) > 0 {
			h.Flags |= abi.FlagHeaders
		}
	}
	e.Reset(h)
	for i, r := range b.Records {
		var kvs []abi.KV
		for _, hd := range r.Headers {
			kvs = append(kvs, abi.KV{Key: []byte(hd.Key), Value: hd.Value})
		}
		attrs := uint32(0)
		if r.Value == nil {
			attrs |= abi.AttrTombstone
		}
		if r.Latest {
			attrs |= abi.AttrLatestForKey
		}
		e.Add(abi.Entry{OffsetDelta: uint32(i), Attrs: attrs, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value, Headers: kvs, SourceIndex: uint32(i)})
	}
	return &e
}

// Output is a record a transform emitted.
type Output struct {
	Source int // index of the input record it came from
	Route  int // 0 = the topic, k = the k-th configured route
	Rec
}

// TransformResult is a transform's output for one batch.
type TransformResult struct {
	Decisions []abi.Decision
	Outputs   []Output
	Message   string // set_error message given with a successful call
}

// Options set the limits of a Plugin's calls.
type Options struct {
	Timeout          time.Duration // per call; 0 means 20 s (tests check behaviour, not speed)
	MemoryLimitBytes uint64        // 0 means the sandbox default (32 MiB)
	Trusted          bool
	Routes           int // routes configured for transforms
}

// Plugin is a registered module.
type Plugin struct {
	t      testing.TB
	e      *sandbox.Engine
	Module sandbox.Module
	Opts   Options
}

var shared struct {
	once sync.Once
	e    *sandbox.Engine
	err  error
}

// CacheDir is where compiled modules are cached across test runs.
var CacheDir = filepath.Join(os.TempDir(), "eddy-plugintest-cache")

// Engine returns the process-wide sandbox engine plugintest uses.
func Engine() (*sandbox.Engine, error) {
	shared.once.Do(func() {
		shared.e, shared.err = sandbox.New(sandbox.Config{CacheDir: CacheDir, InitTimeout: 20 * time.Second})
	})
	return shared.e, shared.err
}

// Load registers the module at wasmPath, failing the test when the
// sandbox refuses it.
func Load(t testing.TB, wasmPath string) *Plugin {
	t.Helper()
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("read plugin: %v", err)
	}
	p, err := LoadBytes(wasm)
	if err != nil {
		t.Fatalf("load plugin %s: %v", wasmPath, err)
	}
	p.t = t
	return p
}

// LoadBytes registers a module.
func LoadBytes(wasm []byte) (*Plugin, error) {
	e, err := Engine()
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	m, err := e.Register(context.Background(), wasm)
	if err != nil {
		return nil, err
	}
	return &Plugin{e: e, Module: m}, nil
}

func (p *Plugin) pool(kind abi.Kind, config []byte) (*sandbox.Pool, time.Duration, error) {
	timeout := p.Opts.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	pool, err := p.e.Pool(context.Background(), p.Module.Digest, kind, config, sandbox.PoolOptions{Trusted: p.Opts.Trusted, MemoryLimitBytes: p.Opts.MemoryLimitBytes})
	return pool, timeout, err
}

// Partition runs the partitioner: one value per record, 0..N-1, -1 (the
// built-in partitioner) or -2 (reject).
func (p *Plugin) Partition(b Batch, config []byte) ([]int32, error) {
	pool, timeout, err := p.pool(abi.KindPartitioner, config)
	if err != nil {
		return nil, err
	}
	return pool.Partition(context.Background(), timeout, b.Encode(abi.StagePartition), nil)
}

// Transform runs the transform at stage (produce, fetch or federate).
func (p *Plugin) Transform(stage abi.Stage, b Batch, config []byte) (TransformResult, error) {
	pool, timeout, err := p.pool(abi.KindTransform, config)
	if err != nil {
		return TransformResult{}, err
	}
	var res TransformResult
	err = pool.Transform(context.Background(), timeout, b.Encode(stage), sandbox.OutputLimits{Routes: p.Opts.Routes}, func(out sandbox.TransformOutput) error {
		for _, d := range out.Decisions {
			res.Decisions = append(res.Decisions, abi.Decision(d))
		}
		res.Message = out.Message
		if !out.HasOutput {
			return nil
		}
		for i := range out.Output.Len() {
			r := out.Output.Record(i)
			o := Output{Source: int(r.SourceIndex()), Route: int(r.Route()), Rec: Rec{Key: clone(r.Key()), Value: clone(r.Value()), Timestamp: r.Timestamp()}}
			for j := range r.HeaderCount() {
				k, v := r.Header(j)
				o.Headers = append(o.Headers, Header{Key: string(k), Value: clone(v)})
			}
			res.Outputs = append(res.Outputs, o)
		}
		return nil
	})
	return res, err
}

// CleanupSegment runs the segment pass of a cleanup policy.
func (p *Plugin) CleanupSegment(meta abi.SegmentMeta, config []byte) (abi.SegmentDecision, error) {
	pool, timeout, err := p.pool(abi.KindCleanup, config)
	if err != nil {
		return 0, err
	}
	return pool.CleanupSegment(context.Background(), timeout, meta)
}

// CleanupRecords runs the records pass of a cleanup policy.
func (p *Plugin) CleanupRecords(b Batch, config []byte) ([]abi.KeepDecision, error) {
	pool, timeout, err := p.pool(abi.KindCleanup, config)
	if err != nil {
		return nil, err
	}
	b.Assigned = true
	return pool.CleanupRecords(context.Background(), timeout, b.Encode(abi.StageCleanup), nil)
}

// Status returns the module's status in the sandbox.
func (p *Plugin) Status() (sandbox.Status, error) { return p.e.Status(p.Module.Digest) }

// Logs returns the module's recent log lines.
func (p *Plugin) Logs() ([]sandbox.LogLine, error) { return p.e.Logs(p.Module.Digest) }

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// Result is what Run returns: the field of the module's first kind
// (partitioner, then transform, then cleanup) is set.
type Result struct {
	Partitions []int32
	Transform  TransformResult
	Keep       []abi.KeepDecision
}

// Run loads the module at wasmPath and runs its first kind over batch
// (transforms at the produce stage, cleanup policies' records pass),
// failing the test on any error.
func Run(t testing.TB, wasmPath string, batch Batch, config []byte) Result {
	t.Helper()
	p := Load(t, wasmPath)
	var res Result
	var err error
	switch k := p.Module.Kinds; {
	case k&abi.KindPartitioner != 0:
		res.Partitions, err = p.Partition(batch, config)
	case k&abi.KindTransform != 0:
		res.Transform, err = p.Transform(abi.StageProduce, batch, config)
	case k&abi.KindCleanup != 0:
		res.Keep, err = p.CleanupRecords(batch, config)
	default:
		err = errors.New("the module has no kind")
	}
	if err != nil {
		t.Fatalf("run %s: %v", wasmPath, err)
	}
	return res
}
