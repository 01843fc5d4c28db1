// Command murmur2 is a partitioner plugin that places keyed records
// exactly where Kafka's default partitioner (and franz-go's
// StickyKeyPartitioner) would: toPositive(murmur2(key)) % partitions.
// Records without a key are left to the broker's built-in partitioner.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o murmur2.wasm .
package main

import (
	"encoding/binary"

	"github.com/eddybroker/eddy/sdk/plugin"
)

func init() { plugin.Partitioner(partition) }

func partition(r plugin.Record, n int32) (int32, error) {
	key := r.Key()
	if key == nil {
		return plugin.DefaultPartition, nil
	}
	return int32(uint32(murmur2(key))&0x7fffffff) % n, nil
}

// murmur2 is Kafka's Utils.murmur2, written out here so the example shows
// the whole algorithm (plugin.Murmur2 is the same function).
func murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
	)
	h := uint32(seed) ^ uint32(len(data))
	for len(data) >= 4 {
		k := binary.LittleEndian.Uint32(data)
		k *= m
		k ^= k >> 24
		k *= m
		h = h*m ^ k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

func main() {}
