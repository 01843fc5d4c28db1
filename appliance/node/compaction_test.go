package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/broker"
	"github.com/eddybroker/eddy/appliance/config"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// waitCleaned waits until the cleaner removed records from a topic.
func waitCleaned(t *testing.T, n *Node, topic string, min int64) []broker.PartitionStatus {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		ps := n.Broker().Partitions(topic)
		var removed int64
		for _, p := range ps {
			if p.Cleaner != nil {
				removed += p.Cleaner.RecordsRemoved
			}
		}
		if removed >= min {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cleaner removed %d records of %s, want at least %d: %+v", removed, topic, min, ps)
		}
		<-time.After(50 * time.Millisecond)
	}
}

func TestCompactedTopicEndToEnd(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Set("log.cleaner_interval", "50ms", config.Flag)
	n := startNode(t, cfg)
	ctx := ctxT(t)
	adm := kadm.NewClient(tcpClient(t, n))
	v := func(s string) *string { return &s }
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy": v("compact"), "segment.bytes": v("4096"), "min.cleanable.dirty.ratio": v("0.01"),
	}, "kv"); err != nil {
		t.Fatal(err)
	}
	prod := tcpClient(t, n, kgo.DefaultProduceTopic("kv"))
	latest := map[string]string{}
	for i := 0; i < 2000; i++ {
		k, val := fmt.Sprintf("key-%02d", i%20), fmt.Sprintf("value-%d", i)
		latest[k] = val
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: []byte(val)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitCleaned(t, n, "kv", 1500)
	cons := tcpClient(t, n, kgo.ConsumeTopics("kv"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]string{}
	lastOff := int64(-1)
	count := 0
	for deadline := time.Now().Add(30 * time.Second); len(seen) < 20 || seen["key-19"] != latest["key-19"]; {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cons.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= lastOff {
				t.Fatalf("offsets went back: %d after %d", r.Offset, lastOff)
			}
			lastOff = r.Offset
			seen[string(r.Key)] = string(r.Value)
			count++
		})
		if time.Now().After(deadline) {
			break
		}
	}
	for k, val := range latest {
		if seen[k] != val {
			t.Fatalf("key %s: a reader from the start ends at %q, the latest is %q", k, seen[k], val)
		}
	}
	if count >= 2000 {
		t.Fatalf("read %d records: nothing was compacted away", count)
	}
}

// TestConsumerOffsetsAreCompacted commits one group's offset many times:
// __consumer_offsets shrinks, and a restart still finds the last commit.
func TestConsumerOffsetsAreCompacted(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Set("log.cleaner_interval", "50ms", config.Flag)
	cfg.Set("groups.offsets_segment_bytes", "16KiB", config.Flag)
	n := startNode(t, cfg)
	ctx := ctxT(t)
	adm := kadm.NewClient(tcpClient(t, n))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "c"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		os := kadm.Offsets{}
		os.AddOffset("c", 0, int64(i), -1)
		if err := adm.CommitAllOffsets(ctx, "committer", os); err != nil {
			t.Fatal(err)
		}
	}
	waitCleaned(t, n, broker.OffsetsTopic, 1000)
	stopNode(t, n)
	cfg2 := testConfig(t, dir)
	n2 := startNode(t, cfg2)
	offs, err := kadm.NewClient(tcpClient(t, n2)).FetchOffsets(ctx, "committer")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("c", 0); !ok || o.At != 2999 {
		t.Fatalf("after compaction and a restart the committed offset is %+v", o)
	}
}
