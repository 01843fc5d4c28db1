package node

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// An idempotent producer's batch that a produce transform changed,
// retried after the node restarted (its producer state then rebuilt from
// the stored batch, renumbered to end at the producer's last sequence), is
// answered as the duplicate it is: the original offset, nothing appended;
// and the producer's next batch is in order. The filter drops records (the
// stored batch starts at a later sequence than sent), the doubling
// transform adds some (it starts earlier, wrapping below 0).
func TestRetryOfATransformedBatchAfterARestart(t *testing.T) {
	for _, c := range []struct {
		name, module, config string
		kept                 int64 // records stored of the first batch's four
	}{
		{"filter", "../../examples/plugins/filter", `{"drop_levels":["debug"]}`, 2},
		{"double", badPlugin, "double", 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			retryAfterRestart(t, c.module, c.config, c.kept)
		})
	}
}

func retryAfterRestart(t *testing.T, module, config string, kept int64) {
	dir := t.TempDir()
	n := startNode(t, testConfig(t, dir))
	ref := addPlugin(t, n, "transform", plugintest.BuildGo(t, module))
	createTopic(t, n, "logs", 1, map[string]string{
		"plugin.produce.transforms": ref,
		"plugin.produce.config":     config,
	})
	ctx := ctxT(t)
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionTimeoutMillis = -1
	ir, err := init.RequestWith(ctx, tcpClient(t, n))
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("InitProducerID: %v %v", err, kerr.ErrorForCode(ir.ErrorCode))
	}
	// Produce v13 names topics by ID.
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("logs")
	meta.Topics = append(meta.Topics, mt)
	mr, err := meta.RequestWith(ctx, tcpClient(t, n))
	if err != nil || len(mr.Topics) != 1 || mr.Topics[0].ErrorCode != 0 {
		t.Fatalf("Metadata: %v", err)
	}
	topicID := mr.Topics[0].TopicID
	now := time.Now().UnixMilli() // a producer whose batches are old has expired
	batch := func(seq int32, levels ...string) []byte {
		var recs []record.Simple
		for i, l := range levels {
			recs = append(recs, record.Simple{Value: []byte(`{"level":"` + l + `"}`), TimestampDelta: int64(i)})
		}
		b, err := record.Build(record.BatchOptions{BaseTimestamp: now, ProducerID: ir.ProducerID, ProducerEpoch: ir.ProducerEpoch, BaseSequence: seq}, recs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	produce := func(cl *kgo.Client, b []byte) (int64, int16) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 10_000
		tp := kmsg.NewProduceRequestTopic()
		tp.Topic, tp.TopicID = "logs", topicID
		p := kmsg.NewProduceRequestTopicPartition()
		p.Records = b
		tp.Partitions = append(tp.Partitions, p)
		req.Topics = append(req.Topics, tp)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		rp := resp.Topics[0].Partitions[0]
		return rp.BaseOffset, rp.ErrorCode
	}
	end := func(n *Node) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		tp := kmsg.NewListOffsetsRequestTopic()
		tp.Topic = "logs"
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Timestamp = -1
		tp.Partitions = append(tp.Partitions, p)
		req.Topics = append(req.Topics, tp)
		resp, err := req.RequestWith(context.Background(), tcpClient(t, n))
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("ListOffsets: %v", err)
		}
		return resp.Topics[0].Partitions[0].Offset
	}

	first := batch(0, "info", "debug", "info", "debug") // sequences 0..3
	if off, code := produce(tcpClient(t, n), first); off != 0 || code != 0 {
		t.Fatalf("first batch: offset %d, %v", off, kerr.ErrorForCode(code))
	}
	if e := end(n); e != kept {
		t.Fatalf("log end %d after the first batch, want %d", e, kept)
	}
	stopNode(t, n)
	// A clean stop snapshots the producer state; without the snapshot (as
	// after a crash) the next start rebuilds it from the stored batches.
	removed := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".snapshot") && strings.Contains(path, "logs-0") {
			removed++
			return os.Remove(path)
		}
		return err
	})
	if err != nil || removed == 0 {
		t.Fatalf("remove the producer snapshot: %v (%d removed)", err, removed)
	}

	n = startNode(t, testConfig(t, dir))
	cl := tcpClient(t, n)
	if off, code := produce(cl, first); off != 0 || code != 0 {
		t.Fatalf("the retry after a restart: offset %d, %v; want the original offset 0", off, kerr.ErrorForCode(code))
	}
	if e := end(n); e != kept {
		t.Fatalf("log end %d after the retry, want %d (nothing appended)", e, kept)
	}
	if off, code := produce(cl, batch(4, "info", "info")); off != kept || code != 0 {
		t.Fatalf("the next batch: offset %d, %v; want %d", off, kerr.ErrorForCode(code), kept)
	}
}
