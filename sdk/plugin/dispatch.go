package plugin

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/eddybroker/eddy/plugins/abi"
)

// The handlers registered from init. One module may hold all three kinds.
var handlers struct {
	partition func(Record, int32) (int32, error)
	transform func(Record, *Writer) (Decision, error)
	segment   func(SegmentMeta) (SegmentDecision, error)
	records   func(Record) (KeepDecision, error)
	cleanup   bool
	onInit    func([]byte) error
	config    []byte
}

// Partitioner registers the partitioner: fn returns 0..n-1,
// DefaultPartition or RejectRecord for each record. Call it from init.
func Partitioner(fn func(r Record, n int32) (int32, error)) { handlers.partition = fn }

// Transform registers the filter/transform run on produce, fetch or
// federation (Batch.Stage tells which). Call it from init.
func Transform(fn func(r Record, w *Writer) (Decision, error)) { handlers.transform = fn }

// Cleanup registers a log-cleanup policy. segment decides for a whole
// closed segment; nil means SegmentRewrite, which runs records on every
// segment the host considers. records decides for each record of a
// rewritten segment; nil means CleanupDefault. Call it from init.
func Cleanup(segment func(m SegmentMeta) (SegmentDecision, error), records func(r Record) (KeepDecision, error)) {
	handlers.segment, handlers.records, handlers.cleanup = segment, records, true
}

// OnInit registers fn to receive the configuration bytes of this use (the
// topic's plugin.<stage>.config) once per instance, before any call. An
// error (wrap ErrConfig) makes the host refuse the configuration.
func OnInit(fn func(config []byte) error) { handlers.onInit = fn }

// Config returns the configuration bytes this instance was initialised
// with.
func Config() []byte { return handlers.config }

// kinds returns the kinds with a registered handler (eddy_kinds).
func kinds() uint32 {
	var k abi.Kind
	if handlers.partition != nil {
		k |= abi.KindPartitioner
	}
	if handlers.transform != nil {
		k |= abi.KindTransform
	}
	if handlers.cleanup {
		k |= abi.KindCleanup
	}
	return uint32(k)
}

// report hands err to the host through set_error.
func report(err error, code uint32) {
	var c interface{ ErrorCode() uint32 }
	if errors.As(err, &c) {
		code = c.ErrorCode()
	}
	msg := err.Error()
	if len(msg) > abi.MaxErrorMessageBytes {
		msg = msg[:abi.MaxErrorMessageBytes]
	}
	hostSetError(code, []byte(msg))
}

// fail reports err and returns its status.
func fail(err error, code uint32) int32 {
	report(err, code)
	switch {
	case errors.Is(err, ErrRetry):
		return int32(abi.StatusRetry)
	case errors.Is(err, ErrConfig):
		return int32(abi.StatusConfig)
	}
	return int32(abi.StatusPlugin)
}

// guard turns a panic into ERR_PLUGIN; use as defer guard(&status).
func guard(status *int32) {
	if p := recover(); p != nil {
		*status = fail(fmt.Errorf("panic: %v", p), CodePanic)
	}
}

func doInit(cfg []byte) (status int32) {
	defer guard(&status)
	handlers.config = append([]byte(nil), cfg...)
	if handlers.onInit != nil {
		if err := handlers.onInit(handlers.config); err != nil {
			if !errors.Is(err, ErrConfig) {
				err = fmt.Errorf("%w: %w", ErrConfig, err)
			}
			return fail(err, CodeError)
		}
	}
	return 0
}

func open(in []byte) (Batch, int32) {
	v, err := abi.Open(in)
	if err != nil {
		report(fmt.Errorf("read input: %w", err), CodeError)
		return Batch{}, int32(abi.StatusInput)
	}
	return Batch{v: v}, 0
}

var le = binary.LittleEndian

// doPartition runs the partitioner over in and writes one u32 per record
// into out (outFor returns it once the count is known).
func doPartition(in []byte, outFor func(n int) []byte) (status int32) {
	defer guard(&status)
	if handlers.partition == nil {
		return fail(errors.New("no partitioner registered"), CodeError)
	}
	b, st := open(in)
	if st != 0 {
		return st
	}
	n := b.Len()
	out := outFor(4 * n)
	pc := b.PartitionCount()
	fn := handlers.partition
	for i := 0; i < n; i++ {
		p, err := fn(Record{b: &b, i: i}, pc)
		if err != nil {
			return fail(fmt.Errorf("record %d: %w", i, err), CodeError)
		}
		le.PutUint32(out[4*i:], uint32(p))
	}
	return int32(n)
}

// output is the buffer handed to set_output; it stays referenced (and
// unchanged) until the next call, as the ABI requires.
var output []byte

var writer Writer

// doTransform runs the transform over in, writes one decision per record
// into out and hands rewritten or extra records to set_output.
func doTransform(in []byte, outFor func(n int) []byte) (status int32) {
	defer guard(&status)
	if handlers.transform == nil {
		return fail(errors.New("no transform registered"), CodeError)
	}
	b, st := open(in)
	if st != 0 {
		return st
	}
	n := b.Len()
	out := outFor(n)
	w := &writer
	w.arena.reset()
	w.enc.Reset(abi.Header{Stage: b.Stage(), Topic: nil, Partition: abi.Unassigned, BaseOffset: -1})
	fn := handlers.transform
	for i := 0; i < n; i++ {
		w.index, w.count = i, 0
		d, err := fn(Record{b: &b, i: i}, w)
		if err != nil {
			return fail(fmt.Errorf("record %d: %w", i, err), CodeError)
		}
		if d == Replace && w.count == 0 {
			return fail(fmt.Errorf("record %d: Replace without a written record (return Drop to drop it)", i), CodeError)
		}
		if !d.Valid() {
			return fail(fmt.Errorf("record %d: unknown decision %d", i, d), CodeError)
		}
		out[i] = byte(d)
	}
	if w.enc.Len() > 0 {
		size := w.enc.Size()
		if cap(output) < size {
			output = make([]byte, size)
		}
		output = w.enc.EncodeInto(output[:size])
		hostSetOutput(output)
	}
	return int32(n)
}

func doCleanupSegment(meta []byte) (status int32) {
	defer guard(&status)
	if !handlers.cleanup {
		return fail(errors.New("no cleanup policy registered"), CodeError)
	}
	if handlers.segment == nil {
		return int32(SegmentRewrite)
	}
	m, err := abi.DecodeSegmentMeta(meta)
	if err != nil {
		report(fmt.Errorf("read segment meta: %w", err), CodeError)
		return int32(abi.StatusInput)
	}
	d, err := handlers.segment(m)
	if err != nil {
		return fail(err, CodeError)
	}
	if !d.Valid() {
		return fail(fmt.Errorf("unknown segment decision %d", d), CodeError)
	}
	return int32(d)
}

func doCleanupRecords(in []byte, outFor func(n int) []byte) (status int32) {
	defer guard(&status)
	if !handlers.cleanup {
		return fail(errors.New("no cleanup policy registered"), CodeError)
	}
	b, st := open(in)
	if st != 0 {
		return st
	}
	n := b.Len()
	out := outFor(n)
	fn := handlers.records
	for i := 0; i < n; i++ {
		d := CleanupDefault
		if fn != nil {
			var err error
			d, err = fn(Record{b: &b, i: i})
			if err != nil {
				return fail(fmt.Errorf("record %d: %w", i, err), CodeError)
			}
			if !d.Valid() {
				return fail(fmt.Errorf("record %d: unknown decision %d", i, d), CodeError)
			}
		}
		out[i] = byte(d)
	}
	return int32(n)
}
