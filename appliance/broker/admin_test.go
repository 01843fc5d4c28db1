package broker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func ptr[T any](v T) *T { return &v }

func TestCreateTopicsValidation(t *testing.T) {
	n := startNode(t, t.TempDir())
	adm := n.admin()
	ctx := ctxT(t)
	cases := []struct {
		name    string
		parts   int32
		rf      int16
		configs map[string]*string
		want    error
	}{
		{"ok", 3, 1, map[string]*string{"retention.ms": ptr("60000")}, nil},
		{"bad/name", 1, 1, nil, kerr.InvalidTopicException},
		{strings.Repeat("x", 250), 1, 1, nil, kerr.InvalidTopicException},
		{"zero-parts", 0, 1, nil, kerr.InvalidPartitions},
		{"rf3", 1, 3, nil, kerr.InvalidReplicationFactor},
		{"bad-config", 1, 1, map[string]*string{"retention.ms": ptr("soon")}, kerr.InvalidConfig},
		{"unknown-config", 1, 1, map[string]*string{"retention.msec": ptr("1")}, kerr.InvalidConfig},
		{"recompress", 1, 1, map[string]*string{"compression.type": ptr("zstd")}, kerr.InvalidConfig},
	}
	for _, c := range cases {
		resp, err := adm.CreateTopic(ctx, c.parts, c.rf, c.configs, c.name)
		if err == nil {
			err = resp.Err
		}
		if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if c.want != nil && resp.ErrMessage == "" {
			t.Errorf("%s: no error message", c.name)
		}
	}
	if resp, _ := adm.CreateTopic(ctx, 1, 1, nil, "ok"); !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("second create: %v", resp.Err)
	}
	// Validate-only changes nothing.
	rs, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, "dry")
	if err != nil || rs["dry"].Err != nil {
		t.Fatalf("validate only: %v %v", err, rs["dry"].Err)
	}
	if _, ok := n.broker.topic("dry"); ok {
		t.Fatal("validate-only created the topic")
	}
	details, err := adm.ListTopics(ctx)
	if err != nil || len(details) != 1 || len(details["ok"].Partitions) != 3 {
		t.Fatalf("topics: %v %v", details, err)
	}
}

func TestTopicConfigsAlterAndPersist(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	adm := n.admin()
	ctx := ctxT(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": ptr("3600000")}, "cfg"); err != nil {
		t.Fatal(err)
	}
	value := func(a *kadm.Client, name string) (string, kmsg.ConfigSource) {
		rcs, err := a.DescribeTopicConfigs(ctx, "cfg")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rcs[0].Configs {
			if c.Key == name {
				return *c.Value, c.Source
			}
		}
		t.Fatalf("config %s not described", name)
		return "", 0
	}
	if v, src := value(adm, "retention.ms"); v != "3600000" || src != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms = %s from %v", v, src)
	}
	if v, src := value(adm, "segment.bytes"); v != "1073741824" || src == kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("segment.bytes = %s from %v", v, src)
	}
	// Incremental: set, append to a list, delete.
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "segment.bytes", Value: ptr("1048576")},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: ptr("compact")},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
	}, "cfg")
	if err != nil || rs[0].Err != nil {
		t.Fatalf("incremental alter: %v %v", err, rs[0].Err)
	}
	if v, _ := value(adm, "cleanup.policy"); v != "delete,compact" && v != "compact,delete" {
		t.Fatalf("cleanup.policy = %s", v)
	}
	_, p, _ := n.broker.partition("cfg", 0)
	if got := p.log.Config().SegmentBytes; got != 1<<20 {
		t.Fatalf("the log did not take the new segment.bytes: %d", got)
	}
	// A bad value is refused and changes nothing.
	rs, _ = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: ptr("-5")}}, "cfg")
	if !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Fatalf("bad segment.bytes: %v", rs[0].Err)
	}
	// Broker configs are described read-only and cannot be altered.
	rcs, err := adm.DescribeBrokerConfigs(ctx, 1)
	if err != nil || len(rcs) != 1 || len(rcs[0].Configs) == 0 {
		t.Fatalf("broker configs: %v %v", rcs, err)
	}
	// Restart: topic, configs and data survive.
	n.stop()
	n = startNode(t, dir)
	adm = n.admin()
	if v, _ := value(adm, "segment.bytes"); v != "1048576" {
		t.Fatalf("after restart segment.bytes = %s", v)
	}
	if v, src := value(adm, "retention.ms"); src == kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("deleted override came back: %s", v)
	}
}

func TestPartitionsRecordsAndOffsets(t *testing.T) {
	n := startNode(t, t.TempDir())
	adm := n.admin()
	ctx := ctxT(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "po"); err != nil {
		t.Fatal(err)
	}
	prod := n.client(kgo.DefaultProduceTopic("po"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := 0; i < 100; i++ {
		r := &kgo.Record{Value: []byte{byte(i)}, Timestamp: time.UnixMilli(base + int64(i)*1000)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	end, _ := adm.ListEndOffsets(ctx, "po")
	start, _ := adm.ListStartOffsets(ctx, "po")
	if o, _ := end.Lookup("po", 0); o.Offset != 100 {
		t.Fatalf("end offset %d", o.Offset)
	}
	if o, _ := start.Lookup("po", 0); o.Offset != 0 {
		t.Fatalf("start offset %d", o.Offset)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, base+42_500, "po")
	if o, _ := after.Lookup("po", 0); err != nil || o.Offset != 43 || o.Timestamp != base+43_000 {
		t.Fatalf("offset after a timestamp: %+v %v", o, err)
	}
	// Max timestamp (ListOffsets -3).
	rc := dialRaw(t, n.addr)
	lreq := kmsg.NewPtrListOffsetsRequest()
	lreq.Version = 7
	lreq.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "po", Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 0, Timestamp: -3, CurrentLeaderEpoch: -1}}}}
	lresp := rc.roundTrip(lreq).(*kmsg.ListOffsetsResponse)
	if sp := lresp.Topics[0].Partitions[0]; sp.Offset != 99 || sp.Timestamp != base+99_000 {
		t.Fatalf("max timestamp: %+v", sp)
	}
	// DeleteRecords moves the log start; fetching below it is out of range.
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "po", Partition: 0, At: 30})
	drs, err := adm.DeleteRecords(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	if dr, _ := drs.Lookup("po", 0); dr.Err != nil || dr.LowWatermark != 30 {
		t.Fatalf("delete records: %+v", dr)
	}
	start, _ = adm.ListStartOffsets(ctx, "po")
	if o, _ := start.Lookup("po", 0); o.Offset != 30 {
		t.Fatalf("start offset after delete-records %d", o.Offset)
	}
	freq := kmsg.NewPtrFetchRequest()
	freq.Version, freq.MaxBytes = 11, 1<<20
	freq.Topics = []kmsg.FetchRequestTopic{{Topic: "po", Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 0, FetchOffset: 5, PartitionMaxBytes: 1 << 20, CurrentLeaderEpoch: -1}}}}
	fresp := rc.roundTrip(freq).(*kmsg.FetchResponse)
	if sp := fresp.Topics[0].Partitions[0]; sp.ErrorCode != kerr.OffsetOutOfRange.Code || sp.LogStartOffset != 30 {
		t.Fatalf("fetch below the log start: %+v", sp)
	}
	// Partitions grow, never shrink.
	if rs, err := adm.UpdatePartitions(ctx, 4, "po"); err != nil || rs["po"].Err != nil {
		t.Fatalf("grow partitions: %v %v", err, rs["po"].Err)
	}
	if rs, _ := adm.UpdatePartitions(ctx, 2, "po"); !errors.Is(rs["po"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrink partitions: %v", rs["po"].Err)
	}
	md, _ := adm.Metadata(ctx, "po")
	if len(md.Topics["po"].Partitions) != 4 {
		t.Fatalf("partitions after growth: %d", len(md.Topics["po"].Partitions))
	}
	if md.Cluster == "" || md.Controller != 1 || len(md.Brokers) != 1 || md.Brokers[0].Port == 0 {
		t.Fatalf("metadata cluster: %+v", md)
	}
	// Delete the topic: gone from metadata and from disk.
	if r, err := adm.DeleteTopic(ctx, "po"); err != nil || r.Err != nil {
		t.Fatalf("delete topic: %v %v", err, r.Err)
	}
	if _, ok := n.store.Log(storageTP("po", 0)); ok {
		t.Fatal("the deleted topic's log is still open")
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mreq.Version = 12
	mreq.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr("po")}}
	mresp := rc.roundTrip(mreq).(*kmsg.MetadataResponse)
	if mresp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("deleted topic in metadata: error %d", mresp.Topics[0].ErrorCode)
	}
}

func TestAutoCreateAndLogAppendTime(t *testing.T) {
	n := startNode(t, t.TempDir())
	ctx := ctxT(t)
	prod := n.client(kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("auto"))
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("v"), Timestamp: time.UnixMilli(1000)}).FirstErr(); err != nil {
		t.Fatalf("produce to a new topic: %v", err)
	}
	if _, ok := n.broker.topic("auto"); !ok {
		t.Fatal("topic not auto-created")
	}
	adm := n.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"message.timestamp.type": ptr("LogAppendTime")}, "lat"); err != nil {
		t.Fatal(err)
	}
	p2 := n.client(kgo.DefaultProduceTopic("lat"))
	before := time.Now().UnixMilli()
	if err := p2.ProduceSync(ctx, &kgo.Record{Value: []byte("v"), Timestamp: time.UnixMilli(1000)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := n.client(kgo.ConsumeTopics("lat"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	recs := consumeAll(t, cons, 1)
	r := recs[0][0]
	if r.Timestamp.UnixMilli() < before || r.Attrs.TimestampType() != 1 {
		t.Fatalf("LogAppendTime topic kept the producer's timestamp: %v type %d", r.Timestamp, r.Attrs.TimestampType())
	}
}
