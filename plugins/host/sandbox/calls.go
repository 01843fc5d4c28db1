package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/eddybroker/eddy/plugins/abi"
)

// Partition runs eddy_partition over in (stage partition, PartitionCount
// set) and returns one value per record: 0..N-1, -1 for the built-in
// partitioner or -2 to reject the record. Any other value fails the call.
// dst is reused when large enough.
func (p *Pool) Partition(ctx context.Context, timeout time.Duration, in abi.Input, dst []int32) ([]int32, error) {
	n := in.Len()
	parts := in.Header().PartitionCount
	dst = resize(dst, n)
	err := p.do(ctx, abi.ExportPartition, timeout, n, func(cctx context.Context, inst *instance) error {
		if inst.fnPartition == nil {
			return fmt.Errorf("%w: no %s export", ErrKind, abi.ExportPartition)
		}
		view, err := inst.callPerRecord(cctx, inst.fnPartition, in, n, 4)
		if err != nil {
			return err
		}
		for i := range n {
			v := le32(view[4*i:])
			switch {
			case v < parts:
				dst[i] = int32(v)
			case v == abi.PartitionDefault:
				dst[i] = -1
			case v == abi.PartitionReject:
				dst[i] = -2
			default:
				return fmt.Errorf("%w: record %d: partition %d, the topic has %d", ErrInvalidOutput, i, v, parts)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return dst, nil
}

// status invokes fn and checks its status: negative is ErrStatus, and a
// kind export must report exactly want records.
func (inst *instance) status(cctx context.Context, fn api.Function, want int, args ...uint64) error {
	st, err := inst.invoke(cctx, fn, args...)
	if err != nil {
		return err
	}
	if st < 0 {
		ce := inst.fail("", ErrStatus)
		ce.Status = st
		return ce
	}
	if want >= 0 && int(st) != want {
		return fmt.Errorf("%w: returned %d for %d records", ErrInvalidOutput, st, want)
	}
	return nil
}

// OutputLimits bound a transform's output (docs/PLUGIN-ABI.md §6.3).
type OutputLimits struct {
	Routes         int // routes configured for this use; output routes must be <= Routes
	MaxBytes       int // set_output bytes; 0 means 4 MiB
	MaxRecordBytes int // key+value+headers of one output record; 0 means no limit
}

// TransformOutput is what a transform call produced. Its slices and view
// alias the instance's memory: they are valid only inside the callback.
type TransformOutput struct {
	Decisions []byte   // one abi.Decision per input record
	Output    abi.View // set_output's buffer, validated; Len() == 0 when none
	HasOutput bool
	Message   string // a set_error message given with a successful call (reasons for Reject)
}

// Transform runs eddy_transform over in, validates decisions and output
// (bounds, source_index order, routes, counts, sizes, a Replaced record has
// outputs) and hands them to fn while the instance is held. An error from
// fn fails the call like invalid output.
func (p *Pool) Transform(ctx context.Context, timeout time.Duration, in abi.Input, lim OutputLimits, fn func(TransformOutput) error) error {
	n := in.Len()
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = abi.DefaultMaxOutputBytes
	}
	return p.do(ctx, abi.ExportTransform, timeout, n, func(cctx context.Context, inst *instance) error {
		if inst.fnTransform == nil {
			return fmt.Errorf("%w: no %s export", ErrKind, abi.ExportTransform)
		}
		dec, err := inst.callPerRecord(cctx, inst.fnTransform, in, n, 1)
		if err != nil {
			return err
		}
		res := TransformOutput{Decisions: dec}
		if inst.errSet {
			res.Message = inst.errMsg
		}
		for i, d := range dec {
			if !abi.Decision(d).Valid() {
				return fmt.Errorf("%w: record %d: unknown decision %d", ErrInvalidOutput, i, d)
			}
		}
		if inst.outSet {
			if int(inst.outLenSet) > lim.MaxBytes {
				return fmt.Errorf("%w: %d output bytes, the cap is %d", ErrInvalidOutput, inst.outLenSet, lim.MaxBytes)
			}
			buf, ok := inst.mem.Read(inst.outPtrSet, inst.outLenSet)
			if !ok {
				return fmt.Errorf("%w: set_output buffer outside memory", ErrInvalidOutput)
			}
			v, err := checkOutput(buf, n, lim)
			if err != nil {
				return err
			}
			res.Output, res.HasOutput = v, true
		}
		if err := checkReplaced(dec, res); err != nil {
			return err
		}
		return fn(res)
	})
}

// checkOutput validates a transform's output buffer for n input records.
func checkOutput(buf []byte, n int, lim OutputLimits) (abi.View, error) {
	v, err := abi.Open(buf)
	if err == nil {
		err = v.Validate()
	}
	if err != nil {
		return abi.View{}, fmt.Errorf("%w: output batch: %w", ErrInvalidOutput, err)
	}
	if v.Len() > abi.MaxOutputFactor*n {
		return abi.View{}, fmt.Errorf("%w: %d output records for %d input records (at most %dx)", ErrInvalidOutput, v.Len(), n, abi.MaxOutputFactor)
	}
	prev := uint32(0)
	for i := range v.Len() {
		r := v.Record(i)
		src := r.SourceIndex()
		if int(src) >= n || src < prev {
			return abi.View{}, fmt.Errorf("%w: output record %d: source_index %d (previous %d, %d inputs): must be < inputs and not decrease", ErrInvalidOutput, i, src, prev, n)
		}
		prev = src
		if int(r.Route()) > lim.Routes {
			return abi.View{}, fmt.Errorf("%w: output record %d: route %d, %d configured", ErrInvalidOutput, i, r.Route(), lim.Routes)
		}
		if lim.MaxRecordBytes > 0 {
			size := len(r.Key()) + len(r.Value())
			for j := range r.HeaderCount() {
				k, val := r.Header(j)
				size += len(k) + len(val)
			}
			if size > lim.MaxRecordBytes {
				return abi.View{}, fmt.Errorf("%w: output record %d: %d bytes, max.message.bytes is %d", ErrInvalidOutput, i, size, lim.MaxRecordBytes)
			}
		}
	}
	return v, nil
}

// checkReplaced makes sure every Replaced record has at least one output.
func checkReplaced(dec []byte, res TransformOutput) error {
	j, m := 0, res.Output.Len()
	if !res.HasOutput {
		m = 0
	}
	for i, d := range dec {
		if abi.Decision(d) != abi.Replaced {
			continue
		}
		for j < m && int(res.Output.Record(j).SourceIndex()) < i {
			j++
		}
		if j >= m || int(res.Output.Record(j).SourceIndex()) != i {
			return fmt.Errorf("%w: record %d is Replaced but no output record names it", ErrInvalidOutput, i)
		}
	}
	return nil
}

// CleanupSegment runs eddy_cleanup_segment on meta.
func (p *Pool) CleanupSegment(ctx context.Context, timeout time.Duration, meta abi.SegmentMeta) (abi.SegmentDecision, error) {
	var d abi.SegmentDecision
	err := p.do(ctx, abi.ExportCleanupSegment, timeout, 0, func(cctx context.Context, inst *instance) error {
		ptr, err := inst.buffer(cctx, &inst.inPtr, &inst.inCap, abi.SegmentMetaSize)
		if err != nil {
			return err
		}
		buf, _ := inst.mem.Read(ptr, abi.SegmentMetaSize)
		meta.EncodeInto(buf)
		st, err := inst.invoke(cctx, inst.fnSeg, uint64(ptr), abi.SegmentMetaSize)
		if err != nil {
			return err
		}
		if st < 0 {
			ce := inst.fail("", ErrStatus)
			ce.Status = st
			return ce
		}
		d = abi.SegmentDecision(st)
		if !d.Valid() {
			return fmt.Errorf("%w: unknown segment decision %d", ErrInvalidOutput, st)
		}
		return nil
	})
	return d, err
}

// CleanupRecords runs eddy_cleanup_records over in (stage cleanup, the
// host bits set in attrs) and returns one decision per record.
func (p *Pool) CleanupRecords(ctx context.Context, timeout time.Duration, in abi.Input, dst []abi.KeepDecision) ([]abi.KeepDecision, error) {
	n := in.Len()
	dst = resize(dst, n)
	err := p.do(ctx, abi.ExportCleanupRecords, timeout, n, func(cctx context.Context, inst *instance) error {
		view, err := inst.callPerRecord(cctx, inst.fnRecs, in, n, 1)
		if err != nil {
			return err
		}
		for i, b := range view {
			if !abi.KeepDecision(b).Valid() {
				return fmt.Errorf("%w: record %d: unknown decision %d", ErrInvalidOutput, i, b)
			}
			dst[i] = abi.KeepDecision(b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return dst, nil
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// callPerRecord writes the RBV1 input, calls fn(in_ptr, in_len, out_ptr)
// and returns the width bytes per record the guest wrote at out_ptr.
func (inst *instance) callPerRecord(ctx context.Context, fn api.Function, in abi.Input, n, width int) ([]byte, error) {
	ptr, size, err := inst.writeInput(ctx, in)
	if err != nil {
		return nil, err
	}
	out, err := inst.buffer(ctx, &inst.outPtr, &inst.outCap, uint32(max(width*n, 1)))
	if err != nil {
		return nil, err
	}
	if err := inst.status(ctx, fn, n, uint64(ptr), uint64(size), uint64(out)); err != nil {
		return nil, err
	}
	view, ok := inst.mem.Read(out, uint32(width*n))
	if !ok {
		return nil, fmt.Errorf("%w: output at %#x outside memory", ErrInvalidOutput, out)
	}
	return view, nil
}
