package broker

import (
	"sort"

	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiVersions is exactly what this broker serves: key -> [min, max].
// ApiVersions advertises this table and nothing else.
var apiVersions = map[int16][2]int16{
	0:  {3, 13}, // Produce (v3+: RecordBatch v2 only)
	1:  {4, 18}, // Fetch
	2:  {1, 7},  // ListOffsets (earliest, latest, by timestamp, max timestamp)
	3:  {0, 13}, // Metadata
	18: {0, 4},  // ApiVersions
	19: {0, 7},  // CreateTopics
	20: {0, 6},  // DeleteTopics
	21: {0, 2},  // DeleteRecords
	22: {0, 5},  // InitProducerID
	23: {0, 4},  // OffsetForLeaderEpoch
	32: {0, 4},  // DescribeConfigs
	33: {0, 2},  // AlterConfigs
	37: {0, 3},  // CreatePartitions
	44: {0, 1},  // IncrementalAlterConfigs
	60: {0, 2},  // DescribeCluster
	8:  {0, 9},  // OffsetCommit
	9:  {0, 9},  // OffsetFetch
	10: {0, 4},  // FindCoordinator
	11: {0, 9},  // JoinGroup
	12: {0, 4},  // Heartbeat
	13: {0, 5},  // LeaveGroup
	14: {0, 5},  // SyncGroup
	15: {0, 6},  // DescribeGroups
	16: {0, 5},  // ListGroups
	42: {0, 2},  // DeleteGroups
	47: {0, 0},  // OffsetDelete
	68: {0, 1},  // ConsumerGroupHeartbeat (KIP-848)
	69: {0, 1},  // ConsumerGroupDescribe (KIP-848)
}

func (b *Broker) apiVersions(req *kafkawire.Request, r *kmsg.ApiVersionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.UnsupportedVersion {
		resp.ErrorCode = kerr.UnsupportedVersion.Code
	}
	keys := make([]int16, 0, len(apiVersions))
	for k := range apiVersions {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		v := apiVersions[k]
		resp.ApiKeys = append(resp.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: v[0], MaxVersion: v[1]})
	}
	return resp
}
