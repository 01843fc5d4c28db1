package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKillNineKeepsAcknowledgedRecords produces with acks=all while the
// real binary is killed with SIGKILL at random moments and restarted on the
// same data directory. Every acknowledged record must be read back, once,
// at the offset it was acknowledged at, and each partition must hold the
// producer's records in the order they were sent. EDDY_CRASH_ROUNDS sets the
// number of kills (default 4).
func TestKillNineKeepsAcknowledgedRecords(t *testing.T) {
	rounds := 4
	if s := os.Getenv("EDDY_CRASH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startEddy(t, dir, "--kafka-addr", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, 4, 1, nil, "crash"); err != nil {
		t.Fatal(err)
	}
	adm.Close()

	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("crash"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.MetadataMinAge(50*time.Millisecond),
		kgo.MaxBufferedRecords(2000), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	type ack struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := map[string]ack{}
	stop := make(chan struct{})
	produced := make(chan int)
	go func() {
		i := 0
		defer func() { produced <- i }()
		for ; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := fmt.Sprintf("v%08d", i)
			prod.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i % 16)), Value: []byte(v)}, func(r *kgo.Record, err error) {
				if err == nil {
					mu.Lock()
					acked[string(r.Value)] = ack{r.Partition, r.Offset}
					mu.Unlock()
				}
			})
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for r := 0; r < rounds; r++ {
		<-time.After(time.Duration(200+rng.IntN(800)) * time.Millisecond) // a random moment of steady producing
		mu.Lock()
		before := len(acked)
		mu.Unlock()
		p.kill()
		p = startEddy(t, dir, "--kafka-addr", addr)
		t.Logf("round %d: killed with %d records acknowledged", r+1, before)
	}
	close(stop)
	total := <-produced
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	if err := prod.Flush(fctx); err != nil {
		t.Fatalf("flush after the last restart: %v", err)
	}
	fcancel()
	prod.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}

	// One more kill -9 after the last acknowledgement, then read back.
	p.kill()
	p = startEddy(t, dir, "--kafka-addr", addr)
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("crash"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]ack{}
	last := map[int32]string{}
	for len(seen) < len(acked) {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %d of %d acknowledged records", len(seen), len(acked))
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if prev, dup := seen[v]; dup {
				t.Fatalf("%s appears twice: at %d/%d and %d/%d", v, prev.partition, prev.offset, r.Partition, r.Offset)
			}
			if l := last[r.Partition]; l != "" && v < l {
				t.Fatalf("partition %d: %s follows %s out of order", r.Partition, v, l)
			}
			last[r.Partition] = v
			seen[v] = ack{r.Partition, r.Offset}
		})
	}
	for v, a := range acked {
		if got, ok := seen[v]; !ok || got != a {
			t.Fatalf("acknowledged %s at %d/%d; read back %v (present %v)", v, a.partition, a.offset, got, ok)
		}
	}
	t.Logf("%d records produced, %d acknowledged, all read back once after %d kills", total, len(acked), rounds+1)
}
