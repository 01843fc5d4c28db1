package node

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/sdk/client"
	"github.com/eddybroker/eddy/transport/netsim"
	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func quicClient(t testing.TB, n *Node, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := client.New(client.Brokers(n.QUICAddr()), client.CAPEM(n.Identity().CAPEM), client.KgoOpts(opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// roundTrip100k produces 100,000 records to 8 partitions with acks=all and
// idempotence, then consumes them back and checks bytes and order.
func roundTrip100k(t *testing.T, n *Node, mk func(...kgo.Opt) *kgo.Client, topic string) {
	const total, parts = 100_000, 8
	adm := kadm.NewClient(mk())
	if _, err := adm.CreateTopic(ctxT(t), parts, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	prod := mk(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	value := func(i int) []byte { return fmt.Appendf(nil, "%s-%07d-%0*d", topic, i, i%300, 7) }
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ctx := ctxT(t)
	for i := 0; i < total; i++ {
		wg.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % parts), Key: []byte(strconv.Itoa(i)), Value: value(i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
	cons := mk(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	next := make([]int, parts) // next logical index expected per partition
	for i := range next {
		next[i] = i
	}
	got := 0
	for got < total {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d", got, total)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			want := next[r.Partition]
			if string(r.Value) != string(value(want)) || string(r.Key) != strconv.Itoa(want) || r.Offset != int64(want/parts) {
				t.Fatalf("partition %d offset %d: %q, want %q", r.Partition, r.Offset, r.Value, value(want))
			}
			next[r.Partition] += parts
			got++
		})
	}
}

func TestFranzGo100kOverTCPAndQUIC(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	t.Run("tcp", func(t *testing.T) {
		roundTrip100k(t, n, func(o ...kgo.Opt) *kgo.Client { return tcpClient(t, n, o...) }, "over-tcp")
	})
	t.Run("quic", func(t *testing.T) {
		roundTrip100k(t, n, func(o ...kgo.Opt) *kgo.Client { return quicClient(t, n, o...) }, "over-quic")
	})
}

func TestMetadataAdvertisesTheListenerUsed(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	for name, c := range map[string]*kgo.Client{
		n.KafkaAddr(): tcpClient(t, n),
		n.QUICAddr():  quicClient(t, n),
	} {
		md, err := kadm.NewClient(c).BrokerMetadata(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(md.Brokers) != 1 || net.JoinHostPort(md.Brokers[0].Host, strconv.Itoa(int(md.Brokers[0].Port))) != name {
			t.Fatalf("a client that came in on %s was told %+v", name, md.Brokers)
		}
	}
}

// TestQUICBlackout cuts a QUIC client's UDP path completely for 5 seconds
// while it produces with acks=all: afterwards it carries on, and every
// acknowledged record is stored exactly once, in order.
func TestQUICBlackout(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lossy := netsim.Wrap(udp)
	tlsConf, err := tlsid.ClientConfig(tlsid.ClientOptions{CAPEM: n.Identity().CAPEM, NextProtos: []string{quic.ALPNKafka}})
	if err != nil {
		t.Fatal(err)
	}
	d := quic.NewDialerOn(lossy, tlsConf, quic.Config{IdleTimeout: 30 * time.Second, KeepAlivePeriod: 2 * time.Second})
	defer d.Close()
	mk := func(o ...kgo.Opt) *kgo.Client {
		c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(n.QUICAddr()), kgo.Dialer(d.DialContext)}, o...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	if _, err := kadm.NewClient(mk()).CreateTopic(ctxT(t), 1, 1, nil, "dark"); err != nil {
		t.Fatal(err)
	}
	prod := mk(kgo.DefaultProduceTopic("dark"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := ctxT(t)
	var mu sync.Mutex
	acked := map[string]int64{}
	ackedAfter := 0
	var blackoutOver bool
	produce := func(i int) {
		v := fmt.Sprintf("r%06d", i)
		prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("record %s failed: %v", v, err)
				return
			}
			acked[v] = r.Offset
			if blackoutOver {
				ackedAfter++
			}
		})
	}
	i := 0 // records produced so far
	for ; i < 1000; i++ {
		produce(i)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lossy.SetDropAll(true)
	end := time.After(5 * time.Second)
	for blackout := true; blackout; {
		select {
		case <-end:
			blackout = false
		default:
			if i%100 == 0 {
				<-time.After(10 * time.Millisecond) // keep producing at a modest rate
			}
			produce(i)
			i++
		}
	}
	lossy.SetDropAll(false)
	mu.Lock()
	blackoutOver = true
	mu.Unlock()
	for j := 0; j < 1000; j++ {
		produce(i + j)
	}
	total := i + 1000
	if err := prod.Flush(ctx); err != nil {
		t.Fatalf("flush after the blackout: %v", err)
	}
	st := lossy.Stats()
	if st.DroppedOut == 0 {
		t.Fatal("nothing was dropped: the blackout did not happen")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) != total || ackedAfter == 0 {
		t.Fatalf("%d of %d records acknowledged (%d after the blackout)", len(acked), total, ackedAfter)
	}
	cons := tcpClient(t, n, kgo.ConsumeTopics("dark"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for read := 0; read < total; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d", read, total)
		}
		fs.EachRecord(func(r *kgo.Record) {
			want := fmt.Sprintf("r%06d", read)
			if string(r.Value) != want || acked[want] != r.Offset {
				t.Fatalf("offset %d holds %q; want %q acknowledged at %d (a loss or a duplicate)", r.Offset, r.Value, want, acked[want])
			}
			read++
		})
	}
}
