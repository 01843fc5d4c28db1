package host

import (
	"context"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/internal/bufpool"
	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
)

// Transformer runs a filter/transform plugin for one use (a topic and a
// stage).
type Transformer struct {
	h       *Host
	pool    *sandbox.Pool
	o       CallOptions
	timeout time.Duration
}

// Transformer binds the transform of module d with config.
func (h *Host) Transformer(ctx context.Context, d Digest, config []byte, o CallOptions) (*Transformer, error) {
	if o.Stage == abi.StagePartition {
		o.Stage = abi.StageProduce
	}
	if o.Stage != abi.StageProduce && o.Stage != abi.StageFetch && o.Stage != abi.StageFederate {
		return nil, fmt.Errorf("bind transform %s: stage %v is not produce, fetch or federate", d.Short(), o.Stage)
	}
	pool, timeout, err := h.bind(ctx, d, abi.KindTransform, config, o, o.Stage)
	if err != nil {
		return nil, err
	}
	return &Transformer{h: h, pool: pool, o: o, timeout: timeout}, nil
}

// Status returns the state of this use's pool.
func (t *Transformer) Status() PoolStatus { return t.pool.Status() }

// Result is a transform's outcome for one batch.
//
// The re-encoding rule: when every record is kept unchanged and nothing
// else is emitted, Out is the input batch itself (Changed false, no copy).
// Otherwise Out is a new RecordBatch v2 holding, in input order, each kept
// record and the records emitted for the default route, with offset deltas
// renumbered 0..n-1, timestamps kept (as deltas from the input's base
// timestamp), and the input's base offset, leader epoch, attributes,
// compression codec and producer id/epoch; its base sequence is set so that
// its last record carries the input's last sequence (a producer's
// sequences are accounted by each batch's last one). Out is nil when no
// record remains. Routes[k-1] holds, built the same way but without
// producer identity (producer id -1), what was emitted for route k.
type Result struct {
	Changed  bool
	Out      []byte
	Routes   [][]byte
	Kept     int // input records kept unchanged
	Dropped  int // input records dropped
	Replaced int // input records replaced
	Emitted  int // records the plugin wrote (all routes)
	// Rejected lists the input records the plugin rejected; when it is
	// not empty the batch must be refused (INVALID_RECORD) and Out and
	// Routes are nil.
	Rejected []int
	// Message is what the plugin passed to set_error with a successful
	// call, typically the reason for a rejection.
	Message string

	owned *owned // the recycled buffers behind Out and Routes
}

// owned is shared by copies of a Result, so that releasing one releases
// them all, once.
type owned struct {
	pool *bufpool.Pool
	bufs [][]byte
}

// Release hands the buffers of Out and Routes back for reuse once the
// caller is done with them (has appended them); neither may be used
// afterwards, through this Result or a copy of it. Without it they are
// garbage collected as usual. It never touches the input batch, which Out
// is when nothing changed, and releasing again does nothing.
func (r *Result) Release() {
	if r.owned == nil {
		return
	}
	for _, b := range r.owned.bufs {
		r.owned.pool.Put(b)
	}
	r.owned.bufs = nil
}

// minPooledOutput is the smallest rebuilt batch given a recycled buffer:
// below it, allocating is as cheap as the pool.
const minPooledOutput = 64 << 10

// Transform runs the transform over batch, whose partition is not yet
// assigned (produce).
func (t *Transformer) Transform(ctx context.Context, batch []byte) (Result, error) {
	return t.TransformPartition(ctx, batch, -1)
}

// TransformPartition runs the transform over batch, a batch of partition
// (fetch and federation know it; -1 when not assigned).
func (t *Transformer) TransformPartition(ctx context.Context, batch []byte, partition int32) (Result, error) {
	d, err := t.h.decode(batch)
	if err != nil {
		return Result{}, err
	}
	defer t.h.release(d)
	hdr := t.h.header(t.o.Stage, t.o.Topic, partition, 0, d.b, t.o.Stage != abi.StageProduce)
	// Each chunk's decisions and outputs go into the rebuilt batch while
	// the guest's memory holds them, without a copy. Until a chunk changes
	// something there is no builder; the first that does starts it with
	// the records before it, all kept.
	var (
		res Result
		b   *builder
	)
	lim := sandbox.OutputLimits{Routes: t.o.Routes, MaxRecordBytes: t.o.MaxRecordBytes}
	err = t.h.chunks(d, hdr, nil, func(enc *abi.BlockEncoder, first int) error {
		return t.pool.Transform(ctx, t.timeout, enc, lim, func(out sandbox.TransformOutput) error {
			if out.Message != "" {
				res.Message = out.Message
			}
			changed := out.HasOutput && out.Output.Len() > 0
			for i, dec := range out.Decisions {
				switch abi.Decision(dec) {
				case abi.Keep:
					res.Kept++
				case abi.Drop:
					res.Dropped++
					changed = true
				case abi.Replaced:
					res.Replaced++
					changed = true
				case abi.Reject:
					res.Rejected = append(res.Rejected, first+i)
				}
			}
			if out.HasOutput {
				res.Emitted += out.Output.Len()
			}
			if b == nil && changed && len(res.Rejected) == 0 {
				b = newBuilder(d.b, t.o.Routes, len(batch), t.h.outs)
				for i := range first {
					b.addOriginal(d.data, &d.recs[i])
				}
			}
			if b == nil || len(res.Rejected) > 0 {
				return nil
			}
			j, n := 0, out.Output.Len() // the output record next in line
			for i, dec := range out.Decisions {
				if abi.Decision(dec) == abi.Keep {
					b.addOriginal(d.data, &d.recs[first+i])
				}
				for ; j < n && int(out.Output.Record(j).SourceIndex()) == i; j++ {
					b.addOutput(out.Output.Record(j))
				}
			}
			return nil
		})
	})
	if err != nil {
		return Result{}, err
	}
	if len(res.Rejected) > 0 {
		return res, nil
	}
	if b == nil {
		res.Out = batch
		return res, nil
	}
	res.Changed, res.owned = true, &owned{pool: t.h.outs}
	if res.Out, err = b.build(0, &res.owned.bufs); err != nil {
		return Result{}, err
	}
	if t.o.Routes > 0 {
		res.Routes = make([][]byte, t.o.Routes)
		for k := 1; k <= t.o.Routes; k++ {
			if res.Routes[k-1], err = b.build(k, &res.owned.bufs); err != nil {
				return Result{}, err
			}
		}
	}
	return res, nil
}

// builder accumulates encoded Kafka records per route, each route's
// after HeaderSize bytes reserved for its batch header, so that build
// completes the batch in place.
type builder struct {
	in     record.Batch
	routes []routeBuf
	hdrs   []kmsg.Header
	pool   *bufpool.Pool
}

type routeBuf struct {
	raw   []byte
	count int32
	maxTS int64
}

// newBuilder starts the routes' buffers; sizeHint is about the bytes the
// default route will hold (a filter's output is at most its input), and a
// large one is taken from pool.
func newBuilder(in record.Batch, routes, sizeHint int, pool *bufpool.Pool) *builder {
	b := &builder{in: in, routes: make([]routeBuf, routes+1), pool: pool}
	for i := range b.routes {
		b.routes[i].maxTS = math.MinInt64
		if n := record.HeaderSize + min(sizeHint, 16<<20); n >= minPooledOutput {
			b.routes[i].raw = pool.Get(n)[:record.HeaderSize]
		} else {
			b.routes[i].raw = make([]byte, record.HeaderSize, n)
		}
		sizeHint = 0
	}
	return b
}

// addOriginal adds an input record, whose fields f are positions in data.
func (b *builder) addOriginal(data []byte, f *record.Fields) {
	b.hdrs = f.AppendHeaders(data, b.hdrs[:0])
	b.append(0, b.in.BaseTimestamp()+f.TimestampDelta, f.Key.In(data), f.Value.In(data), b.hdrs)
}

// addOutput adds a record the plugin emitted (copying it: the output is
// guest memory).
func (b *builder) addOutput(r abi.RecordView) {
	b.hdrs = b.hdrs[:0]
	for j := range r.HeaderCount() {
		k, v := r.Header(j)
		b.hdrs = append(b.hdrs, kmsg.Header{Key: unsafe.String(unsafe.SliceData(k), len(k)), Value: v})
	}
	b.append(int(r.Route()), r.Timestamp(), r.Key(), r.Value(), b.hdrs)
}

// append encodes one record (copying its bytes) into route k's records.
func (b *builder) append(k int, ts int64, key, value []byte, hdrs []kmsg.Header) {
	rb := &b.routes[k]
	rb.raw = record.AppendRecord(rb.raw, ts-b.in.BaseTimestamp(), rb.count, key, value, hdrs)
	rb.count++
	rb.maxTS = max(rb.maxTS, ts)
}

// build wraps route k's records in a RecordBatch v2; nil when empty. The
// buffer behind the batch is added to bufs; one it no longer needs
// (compressed batches are written anew) goes back to the pool.
func (b *builder) build(k int, bufs *[][]byte) ([]byte, error) {
	rb := &b.routes[k]
	if rb.count == 0 {
		return nil, nil
	}
	opts := record.BatchOptions{
		BaseOffset:    b.in.BaseOffset(),
		LeaderEpoch:   b.in.LeaderEpoch(),
		Codec:         b.in.Codec(),
		Attributes:    b.in.Attributes(),
		BaseTimestamp: b.in.BaseTimestamp(),
		ProducerID:    b.in.ProducerID(),
		ProducerEpoch: b.in.ProducerEpoch(),
		BaseSequence:  b.in.BaseSequence(),
	}
	if opts.BaseSequence >= 0 {
		// Records dropped from the batch leave its producer's last
		// sequence where it was, the one idempotence accounts by.
		opts.BaseSequence = record.BaseSequenceEnding(b.in.LastSequence(), rb.count-1)
	}
	if k > 0 {
		opts.BaseOffset, opts.LeaderEpoch = 0, -1
		opts.ProducerID, opts.ProducerEpoch, opts.BaseSequence = -1, -1, -1
		opts.Attributes &^= record.AttrTransactional
	}
	maxTS := rb.maxTS
	if opts.Attributes&record.AttrLogAppendTime != 0 {
		maxTS = b.in.MaxTimestamp()
	}
	out, err := record.BuildInto(opts, rb.raw, rb.count, rb.count-1, maxTS)
	if err != nil {
		return nil, fmt.Errorf("build transformed batch (route %d): %w", k, err)
	}
	switch {
	case cap(rb.raw) < minPooledOutput:
	case &out[0] == &rb.raw[0]:
		*bufs = append(*bufs, out)
	default:
		b.pool.Put(rb.raw)
	}
	return out, nil
}
