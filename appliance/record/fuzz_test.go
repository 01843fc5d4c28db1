package record

import (
	"testing"
)

// FuzzValidate feeds arbitrary bytes to the produce-side validator and the
// record iterator: nothing may panic, and whatever passes must be intact.
func FuzzValidate(f *testing.F) {
	for _, c := range []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
		b, err := Build(BatchOptions{Codec: c, ProducerID: -1}, sampleRecords(3))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Validate(data, ValidateOptions{Records: true, MaxUncompressed: 1 << 20})
		if err != nil {
			return
		}
		if _, err := Check(b); err != nil {
			t.Fatalf("validated batch fails Check: %v", err)
		}
		n := int32(0)
		if err := b.EachRecord(1<<20, func(*Record) error { n++; return nil }); err != nil {
			t.Fatalf("validated batch fails iteration: %v", err)
		}
		if n != b.RecordCount() {
			t.Fatalf("validated batch has %d records, header says %d", n, b.RecordCount())
		}
	})
}
