package host_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/plugins/host"
	"github.com/eddybroker/eddy/plugins/host/internal/wasmgen"
)

// Benchmarks of the example plugins through the whole host path: decode
// the RecordBatch, encode RBV1 into guest memory, run the guest, validate
// and (for the filter) build the output batch. Reported per record:
//
//	go test -run '^$' -bench . -benchtime 2000x ./plugins/host/

func benchRecords(n int) []rec {
	recs := make([]rec, n)
	levels := []string{"info", "warn", "debug", "error"}
	for i := range recs {
		recs[i] = rec{
			key:   fmt.Appendf(nil, "device-%08d", i),
			value: fmt.Appendf(nil, `{"site_id":"site-%d","level":%q,"temp":21.5,"msg":"reading %d","password":"p%d"}`, i%50, levels[i%4], i, i),
		}
	}
	return recs
}

func BenchmarkPartitionMurmur2(b *testing.B) {
	h := newHost(b, nil)
	m := example(b, h, "murmur2")
	benchPartitioner(b, h, m)
}

// BenchmarkPartitionASMurmur2 runs the AssemblyScript murmur2 example
// (the committed build) for comparison with the Go guest.
func BenchmarkPartitionASMurmur2(b *testing.B) {
	h := newHost(b, nil)
	benchPartitioner(b, h, committed(b, h, "as-murmur2"))
}

// committed registers the committed build of an AssemblyScript example.
func committed(b *testing.B, h *host.Host, name string) host.Module {
	wasm, err := os.ReadFile("../../examples/plugins/testdata/" + name + ".wasm")
	if err != nil {
		b.Fatal(err)
	}
	m, err := h.Register(context.Background(), wasm)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkPartitionHostFloor runs a guest that does nothing but write
// partition 0 (wasmgen), to show the host's own cost per record: batch
// decoding, RBV1 encoding into guest memory, the call and the checks.
func BenchmarkPartitionHostFloor(b *testing.B) {
	h := newHost(b, nil)
	zeros := wasmgen.Cat(
		[]byte{wasmgen.OpLocalGet, 2}, wasmgen.Const(0), wasmgen.RecordCount, wasmgen.Const(2),
		[]byte{wasmgen.OpI32Shl, 0xFC, 11, 0}, wasmgen.RecordCount, []byte{wasmgen.OpEnd})
	m, err := h.Register(context.Background(), wasmgen.Plugin{Partition: zeros}.Encode())
	if err != nil {
		b.Fatal(err)
	}
	benchPartitioner(b, h, m)
}

func benchPartitioner(b *testing.B, h *host.Host, m host.Module) {
	for _, trusted := range []bool{false, true} {
		p, err := h.Partitioner(context.Background(), m.Digest, nil, host.CallOptions{Topic: "t", Trusted: trusted})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 100, 4096} {
			batch := kafkaBatch(b, record.CodecNone, benchRecords(n))
			b.Run(fmt.Sprintf("%s/records=%d", mode(trusted), n), func(b *testing.B) {
				for b.Loop() {
					if _, err := p.Partition(context.Background(), batch, 12); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			})
		}
	}
}

func BenchmarkTransformFilter(b *testing.B) {
	h := newHost(b, nil)
	benchFilter(b, h, example(b, h, "filter"))
}

// BenchmarkTransformASFilter runs the AssemblyScript filter (the
// committed build), which behaves as the Go one with its defaults.
func BenchmarkTransformASFilter(b *testing.B) {
	h := newHost(b, nil)
	benchFilter(b, h, committed(b, h, "as-filter"))
}

func benchFilter(b *testing.B, h *host.Host, m host.Module) {
	for _, trusted := range []bool{false, true} {
		tr, err := h.Transformer(context.Background(), m.Digest, nil, host.CallOptions{Topic: "t", Trusted: trusted})
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{0, 1024} {
			for _, n := range []int{1, 100, 4096} {
				recs := benchRecords(n)
				name := fmt.Sprintf("%s/records=%d", mode(trusted), n)
				if size > 0 {
					// The same records with their message padded to size bytes.
					for i := range recs {
						pad := size - len(recs[i].value)
						recs[i].value = append(recs[i].value[:len(recs[i].value)-1], fmt.Sprintf(`,"pad":"%s"}`, strings.Repeat("x", max(pad-10, 0)))...)
					}
					name += fmt.Sprintf("/value=%dB", len(recs[0].value))
				}
				batch := kafkaBatch(b, record.CodecNone, recs)
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						res, err := tr.Transform(context.Background(), batch)
						if err != nil {
							b.Fatal(err)
						}
						// As the broker does once the batch is appended.
						res.Release()
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
				})
			}
		}
	}
}

func mode(trusted bool) string {
	if trusted {
		return "trusted"
	}
	return "guarded"
}
