package broker

import (
	"bytes"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func fetchReq(topic string, offset int64, minBytes, waitMs int32) *kmsg.FetchRequest {
	r := kmsg.NewPtrFetchRequest()
	r.Version, r.MaxBytes, r.MinBytes, r.MaxWaitMillis = 11, 1<<20, minBytes, waitMs
	p := kmsg.NewFetchRequestTopicPartition()
	p.FetchOffset, p.PartitionMaxBytes, p.CurrentLeaderEpoch = offset, 1<<20, -1
	r.Topics = []kmsg.FetchRequestTopic{{Topic: topic, Partitions: []kmsg.FetchRequestTopicPartition{p}}}
	return r
}

func TestFetchLongPoll(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := n.admin().CreateTopic(ctxT(t), 1, 1, nil, "lp"); err != nil {
		t.Fatal(err)
	}
	// Nothing there: the fetch waits out max_wait, then answers empty.
	rc := dialRaw(t, n.addr)
	start := time.Now()
	resp := rc.roundTrip(fetchReq("lp", 0, 1, 300)).(*kmsg.FetchResponse)
	if el := time.Since(start); el < 250*time.Millisecond || len(resp.Topics[0].Partitions[0].RecordBatches) != 0 {
		t.Fatalf("empty long poll answered after %v with %d bytes", el, len(resp.Topics[0].Partitions[0].RecordBatches))
	}
	// A waiting fetch answers as soon as data arrives, well before max_wait.
	rc.send(fetchReq("lp", 0, 1, 30_000))
	produced := make(chan kmsg.ProduceResponseTopicPartition, 1)
	prod := dialRaw(t, n.addr)
	go func() { produced <- produceRaw(prod, "lp", goodBatch(t, "wake")) }()
	defer func() {
		if sp := <-produced; sp.ErrorCode != 0 {
			t.Errorf("produce: %+v", sp)
		}
	}()
	start = time.Now()
	frame := readFrame(t, rc)
	fresp := &kmsg.FetchResponse{Version: 11}
	if _, err := parseResp(frame, fresp); err != nil {
		t.Fatal(err)
	}
	sp := fresp.Topics[0].Partitions[0]
	if el := time.Since(start); el > 10*time.Second || sp.HighWatermark != 1 || len(sp.RecordBatches) == 0 {
		t.Fatalf("woken long poll: after %v, hw %d, %d bytes", el, sp.HighWatermark, len(sp.RecordBatches))
	}
	b, err := record.Check(sp.RecordBatches)
	if err != nil || b.BaseOffset() != 0 {
		t.Fatalf("fetched batch: %v", err)
	}
}

func TestAcksZeroGetsNoResponse(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := n.admin().CreateTopic(ctxT(t), 1, 1, nil, "a0"); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, n.addr)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, 0
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "a0", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: goodBatch(t, "fire", "forget")}}}}
	rc.send(req)
	// The next request's response is the next frame: none came for acks=0.
	resp := rc.roundTrip(kmsg.NewPtrApiVersionsRequest())
	if _, ok := resp.(*kmsg.ApiVersionsResponse); !ok {
		t.Fatalf("got %T", resp)
	}
	_, p, _ := n.broker.partition("a0", 0)
	deadline := time.Now().Add(10 * time.Second)
	for p.log.Offsets().HW != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("acks=0 records never became visible: %+v", p.log.Offsets())
		}
		<-p.log.HWChanged()
	}
}

func TestOffsetForLeaderEpochAndInitProducerID(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := n.admin().CreateTopic(ctxT(t), 1, 1, nil, "ep"); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, n.addr)
	produceRaw(rc, "ep", goodBatch(t, "a", "b", "c"))
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.Version = 4
	req.ReplicaID = -1
	req.Topics = []kmsg.OffsetForLeaderEpochRequestTopic{{Topic: "ep", Partitions: []kmsg.OffsetForLeaderEpochRequestTopicPartition{
		{Partition: 0, CurrentLeaderEpoch: 0, LeaderEpoch: 0},
		{Partition: 0, CurrentLeaderEpoch: 0, LeaderEpoch: 5},
		{Partition: 0, CurrentLeaderEpoch: 3, LeaderEpoch: 0},
		{Partition: 9, CurrentLeaderEpoch: -1, LeaderEpoch: 0},
	}}}
	resp := rc.roundTrip(req).(*kmsg.OffsetForLeaderEpochResponse)
	ps := resp.Topics[0].Partitions
	if ps[0].ErrorCode != 0 || ps[0].LeaderEpoch != 0 || ps[0].EndOffset != 3 {
		t.Errorf("epoch 0: %+v", ps[0])
	}
	if ps[1].ErrorCode != 0 || ps[1].LeaderEpoch != -1 || ps[1].EndOffset != -1 {
		t.Errorf("unknown newer epoch: %+v", ps[1])
	}
	if ps[2].ErrorCode != kerr.UnknownLeaderEpoch.Code {
		t.Errorf("client ahead of the leader: %+v", ps[2])
	}
	if ps[3].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("unknown partition: %+v", ps[3])
	}
	ids := map[int64]bool{}
	for i := 0; i < 3; i++ {
		r := rc.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
		if r.ErrorCode != 0 || r.ProducerEpoch != 0 || ids[r.ProducerID] {
			t.Fatalf("init producer id: %+v", r)
		}
		ids[r.ProducerID] = true
	}
	txn := "tx"
	if r := rc.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, TransactionalID: &txn, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse); r.ErrorCode == 0 {
		t.Fatalf("a transactional producer was given an id: %+v", r)
	}
	dc := rc.roundTrip(&kmsg.DescribeClusterRequest{Version: 1, EndpointType: 1}).(*kmsg.DescribeClusterResponse)
	if dc.ClusterID == "" || dc.ControllerID != 1 || len(dc.Brokers) != 1 || dc.Brokers[0].Port == 0 {
		t.Fatalf("describe cluster: %+v", dc)
	}
}

// TestProducerStateFromRollSnapshot restarts after a crash with segments
// rolled many times: producer state comes from the newest roll snapshot plus
// the batches after it, and a retry of the last batch is still recognised.
func TestProducerStateFromRollSnapshot(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config, s *storage.Config) { c.TopicDefaults = map[string]string{"segment.bytes": "2000"} }
	n := startNode(t, dir, small)
	if _, err := n.admin().CreateTopic(ctxT(t), 1, 1, nil, "snap"); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, n.addr)
	idResp := rc.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	pid := idResp.ProducerID
	batch := func(seq int32) []byte {
		b, err := record.Build(record.BatchOptions{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seq, BaseTimestamp: time.Now().UnixMilli()},
			[]record.Simple{{Value: make([]byte, 300)}, {Value: make([]byte, 300)}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var last []byte
	for seq := int32(0); seq < 40; seq += 2 {
		last = batch(seq)
		if sp := produceRaw(rc, "snap", append([]byte(nil), last...)); sp.ErrorCode != 0 || sp.BaseOffset != int64(seq) {
			t.Fatalf("seq %d: %+v", seq, sp)
		}
	}
	_, p, _ := n.broker.partition("snap", 0)
	if p.log.SegmentCount() < 5 {
		t.Fatalf("only %d segments", p.log.SegmentCount())
	}
	names, _ := n.store.FS().List(p.log.Dir())
	snaps := 0
	for _, name := range names {
		if _, ok := snapshotOffset(name); ok {
			snaps++
		}
	}
	if snaps != 2 {
		t.Fatalf("%d producer snapshots kept, want the two newest", snaps)
	}
	addr := n.addr
	n.crash()
	n = startNodeAt(t, dir, addr, small)
	rc = dialRaw(t, n.addr)
	// The retried last batch is answered with its original offset.
	if sp := produceRaw(rc, "snap", last); sp.ErrorCode != 0 || sp.BaseOffset != 38 {
		t.Fatalf("retry after the crash: %+v", sp)
	}
	// A gap is refused; the next sequence is accepted.
	if sp := produceRaw(rc, "snap", batch(44)); sp.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("out-of-order batch: %+v", sp)
	}
	if sp := produceRaw(rc, "snap", batch(40)); sp.ErrorCode != 0 || sp.BaseOffset != 40 {
		t.Fatalf("next batch: %+v", sp)
	}
}

// boundedFetchNode starts a broker whose Fetch responses carry at most
// 64 KiB, with a topic of the given partitions holding ten 20 KiB batches
// each; it returns the producing connection and the 20 KiB value.
func boundedFetchNode(t *testing.T, topic string, partitions int32) (*testNode, *rawConn, string) {
	n := startNode(t, t.TempDir(), func(c *Config, _ *storage.Config) { c.FetchMaxBytes = 64 << 10 })
	if _, err := n.admin().CreateTopic(ctxT(t), partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	prod := dialRaw(t, n.addr)
	value := string(bytes.Repeat([]byte("v"), 20<<10))
	for p := range partitions {
		for range 10 {
			if sp := produceRawTo(prod, topic, p, goodBatch(t, value)); sp.ErrorCode != 0 {
				t.Fatalf("produce: %+v", sp)
			}
		}
	}
	return n, prod, value
}

// TestFetchResponseIsBoundedByTheBroker: whatever a Fetch asks for, its
// response carries at most the broker's fetch_max_bytes of records, and a
// first batch larger than that still comes whole.
func TestFetchResponseIsBoundedByTheBroker(t *testing.T) {
	n, prod, value := boundedFetchNode(t, "big", 2)
	huge := value + value + value + value // one 80 KiB batch, above the bound
	if sp := produceRawTo(prod, "big", 0, goodBatch(t, huge)); sp.ErrorCode != 0 {
		t.Fatalf("produce: %+v", sp)
	}
	rc := dialRaw(t, n.addr)
	fetch := func(offsets ...int64) *kmsg.FetchResponse {
		r := fetchReq("big", 0, 1, 0)
		r.MaxBytes = 1 << 30
		r.Topics[0].Partitions = nil
		for p, o := range offsets {
			r.Topics[0].Partitions = append(r.Topics[0].Partitions, kmsg.FetchRequestTopicPartition{
				Partition: int32(p), FetchOffset: o, PartitionMaxBytes: 1 << 30, CurrentLeaderEpoch: -1})
		}
		return rc.roundTrip(r).(*kmsg.FetchResponse)
	}
	resp := fetch(0, 0)
	total := 0
	for _, sp := range resp.Topics[0].Partitions {
		total += len(sp.RecordBatches)
	}
	if total == 0 || total > 64<<10 {
		t.Fatalf("a fetch asking for 1 GiB got %d bytes, want some and at most 64 KiB", total)
	}
	// The 80 KiB batch at offset 10 of partition 0 comes alone and whole.
	resp = fetch(10)
	b, err := record.Check(resp.Topics[0].Partitions[0].RecordBatches)
	if err != nil || b.BaseOffset() != 10 || len(resp.Topics[0].Partitions[0].RecordBatches) < 80<<10 {
		t.Fatalf("the batch above the bound: %v, %d bytes", err, len(resp.Topics[0].Partitions[0].RecordBatches))
	}
}

// TestFetchMinBytesAboveTheBoundIsMetByAFullResponse: a Fetch whose
// min_bytes is above the broker's response bound answers as soon as a
// full response is there, not when max_wait runs out.
func TestFetchMinBytesAboveTheBoundIsMetByAFullResponse(t *testing.T) {
	n, _, _ := boundedFetchNode(t, "mb", 1)
	rc := dialRaw(t, n.addr)
	start := time.Now()
	resp := rc.roundTrip(fetchReq("mb", 0, 100<<10, 30_000)).(*kmsg.FetchResponse)
	got := len(resp.Topics[0].Partitions[0].RecordBatches)
	if el := time.Since(start); el > 10*time.Second || got == 0 || got > 64<<10 {
		t.Fatalf("min_bytes 100 KiB above a 64 KiB bound, 200 KiB there: answered after %v with %d bytes", el, got)
	}
}
