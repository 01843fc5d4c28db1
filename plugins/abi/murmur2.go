package abi

// Murmur2 is the 32-bit MurmurHash2 variant Kafka's default partitioner
// uses (org.apache.kafka.common.utils.Utils.murmur2): seed 0x9747b28c, the
// tail mixed in little-endian order. The host's built-in partitioner, the
// one PartitionDefault selects, is defined by this function.
func Murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
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

// KafkaPartition maps a non-null key to a partition the way Kafka's
// default partitioner does: toPositive(murmur2(key)) % n. n must be > 0.
func KafkaPartition(key []byte, n int32) int32 {
	return int32(uint32(Murmur2(key))&0x7fffffff) % n
}
