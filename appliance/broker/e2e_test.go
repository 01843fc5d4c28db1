package broker

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func produceN(t *testing.T, c *kgo.Client, topic string, n, partitions int) map[int32][][]byte {
	t.Helper()
	sent := map[int32][][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for i := 0; i < n; i++ {
		v := fmt.Appendf(nil, "record-%06d-%s", i, bytes.Repeat([]byte{'x'}, i%200))
		r := &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: v, Key: fmt.Appendf(nil, "k%d", i)}
		wg.Add(1)
		c.Produce(ctxT(t), r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
	// Per partition, in offset order: re-derive from the sequence sent.
	for i := 0; i < n; i++ {
		p := int32(i % partitions)
		sent[p] = append(sent[p], fmt.Appendf(nil, "record-%06d-%s", i, bytes.Repeat([]byte{'x'}, i%200)))
	}
	return sent
}

func consumeAll(t *testing.T, c *kgo.Client, want int) map[int32][]*kgo.Record {
	t.Helper()
	got := map[int32][]*kgo.Record{}
	n := 0
	ctx := ctxT(t)
	for n < want {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d before the deadline", n, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], r)
			n++
		})
	}
	return got
}

func TestFranzGoProduceConsumeTCP(t *testing.T) {
	n := startNode(t, t.TempDir())
	adm := n.admin()
	if _, err := adm.CreateTopic(ctxT(t), 8, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	const total = 20000
	sent := produceN(t, prod, "orders", total, 8)
	cons := n.client(kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := consumeAll(t, cons, total)
	for p := int32(0); p < 8; p++ {
		if len(got[p]) != len(sent[p]) {
			t.Fatalf("partition %d: consumed %d, produced %d", p, len(got[p]), len(sent[p]))
		}
		for i, r := range got[p] {
			if r.Offset != int64(i) || !bytes.Equal(r.Value, sent[p][i]) {
				t.Fatalf("partition %d offset %d: got %q at %d", p, i, r.Value, r.Offset)
			}
		}
	}
}
