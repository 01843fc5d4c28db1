// Command murmur2 is a partitioner plugin that places keyed records
// exactly where Kafka's default partitioner (and franz-go's
// StickyKeyPartitioner) would: toPositive(murmur2(key)) % partitions.
// Records without a key are left to the broker's built-in partitioner.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o murmur2.wasm .
package main

import "github.com/eddybroker/eddy/sdk/plugin"

func init() { plugin.Partitioner(partition) }

func partition(r plugin.Record, n int32) (int32, error) {
	key := r.Key()
	if key == nil {
		return plugin.DefaultPartition, nil
	}
	return plugin.KafkaPartition(key, n), nil
}

// murmur2 is Kafka's Utils.murmur2 (the SDK's, shared with the broker and
// the client-side partitioner, so every placement agrees).
func murmur2(data []byte) int32 { return plugin.Murmur2(data) }

func main() {}
