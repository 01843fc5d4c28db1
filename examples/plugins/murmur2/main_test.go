package main

import (
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka's UtilsTest.testMurmur2 vectors.
func TestMurmur2KafkaVectors(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := murmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestMatchesKgo compares the placement with franz-go's default key
// partitioner, natively.
func TestMatchesKgo(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		key := make([]byte, rng.IntN(64))
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		n := int32(1 + rng.IntN(200))
		want := int32(p.Partition(&kgo.Record{Key: key}, int(n)))
		if got := int32(uint32(murmur2(key))&0x7fffffff) % n; got != want {
			t.Fatalf("key %x, %d partitions: %d, kgo %d", key, n, got, want)
		}
	}
}
