package host

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/plugins/abi"
)

// TestChunksStayWithinMaxInputBytes splits batches at many input limits
// and checks every chunk: at most MaxInputBytes unless it holds a single
// record, every record in order, and fields intact. Records whose trailing
// bytes carry no field (empty header keys with null values) once let a
// chunk grow past the limit.
func TestChunksStayWithinMaxInputBytes(t *testing.T) {
	var recs []record.Simple
	var hs []kmsg.Header
	for range 1000 {
		hs = append(hs, kmsg.Header{Key: "", Value: nil})
	}
	recs = append(recs, record.Simple{Key: []byte("a"), Headers: hs})
	recs = append(recs, record.Simple{Value: bytes.Repeat([]byte("v"), 100)})
	for i := range 50 {
		r := record.Simple{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte{byte(i)}, i*37%300)}
		if i%3 == 0 {
			r.Headers = []kmsg.Header{{Key: "h", Value: []byte("x")}, {Key: "", Value: nil}}
		}
		recs = append(recs, r)
	}
	batch, err := record.Build(record.BatchOptions{ProducerID: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{200, 1000, 2500, 16274, 20000, 1 << 20} {
		h := &Host{cfg: Config{MaxBatchRecords: abi.DefaultMaxRecords, MaxInputBytes: limit}}
		seen := 0
		hdr := func(record.Batch) abi.Header {
			return abi.Header{Stage: abi.StageProduce, Partition: abi.Unassigned, BaseOffset: -1}
		}
		n, err := h.stream(batch, hdr, nil, func(enc *abi.BlockEncoder, first int) error {
			if first != seen {
				return fmt.Errorf("chunk starts at record %d, want %d", first, seen)
			}
			if enc.Len() > 1 && enc.Size() > limit {
				return fmt.Errorf("chunk of %d records is %d bytes, over the %d limit", enc.Len(), enc.Size(), limit)
			}
			v, err := abi.Open(enc.EncodeInto(make([]byte, enc.Size())))
			if err != nil {
				return err
			}
			if err := v.Validate(); err != nil {
				return err
			}
			for j := range v.Len() {
				r, want := v.Record(j), recs[first+j]
				if !bytes.Equal(r.Key(), want.Key) || !bytes.Equal(r.Value(), want.Value) || r.HeaderCount() != len(want.Headers) || int(r.SourceIndex()) != j {
					return fmt.Errorf("record %d differs", first+j)
				}
			}
			seen += v.Len()
			return nil
		})
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		if n != len(recs) || seen != len(recs) {
			t.Fatalf("limit %d: %d records streamed, %d seen, want %d", limit, n, seen, len(recs))
		}
	}
}
