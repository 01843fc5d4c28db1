package broker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lossyProxy forwards Kafka connections to a broker and can swallow
// produce responses: the broker has appended, the client never hears it,
// and the connection drops, so the client must retry.
type lossyProxy struct {
	ln      net.Listener
	target  func() string
	drops   atomic.Int32 // produce responses still to swallow
	dropped atomic.Int32
	onDrop  func() // runs after a swallowed response, before the connection closes
	wg      sync.WaitGroup
}

func newLossyProxy(t *testing.T, target func() string) *lossyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *lossyProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *lossyProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target())
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	keys := map[int32]int16{} // correlation id -> api key
	go func() {
		r := bufio.NewReader(client)
		for {
			frame, err := kafkawire.ReadFrame(r, 64<<20)
			if err != nil {
				server.Close()
				return
			}
			mu.Lock()
			keys[int32(binary.BigEndian.Uint32(frame[4:]))] = int16(binary.BigEndian.Uint16(frame))
			mu.Unlock()
			var sz [4]byte
			binary.BigEndian.PutUint32(sz[:], uint32(len(frame)))
			if _, err := server.Write(append(sz[:], frame...)); err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(server)
	for {
		frame, err := kafkawire.ReadFrame(r, 64<<20)
		if err != nil {
			return
		}
		mu.Lock()
		key := keys[int32(binary.BigEndian.Uint32(frame))]
		mu.Unlock()
		if key == 0 && p.drops.Add(-1) >= 0 {
			p.dropped.Add(1)
			if p.onDrop != nil {
				p.onDrop()
			}
			return // the response is lost and the connection with it
		}
		var sz [4]byte
		binary.BigEndian.PutUint32(sz[:], uint32(len(frame)))
		if _, err := client.Write(append(sz[:], frame...)); err != nil {
			return
		}
	}
}

func (p *lossyProxy) addr() string { return p.ln.Addr().String() }

// fastRetries makes a client refresh metadata and retry quickly after a
// lost connection, so tests do not wait out the 5 s default.
var fastRetries = kgo.MetadataMinAge(20 * time.Millisecond)

// checkExactlyOnce consumes a topic and checks every value sent appears
// exactly once, in send order per partition.
func checkExactlyOnce(t *testing.T, n *testNode, topic string, partitions int, sent map[int32][][]byte, total int) {
	t.Helper()
	cons := n.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := consumeAll(t, cons, total)
	for p := int32(0); p < int32(partitions); p++ {
		if len(got[p]) != len(sent[p]) {
			t.Fatalf("partition %d holds %d records, %d were produced: duplicates or losses", p, len(got[p]), len(sent[p]))
		}
		for i, r := range got[p] {
			if string(r.Value) != string(sent[p][i]) {
				t.Fatalf("partition %d offset %d: %q, want %q", p, r.Offset, r.Value, sent[p][i])
			}
		}
	}
	// Nothing beyond what was produced trails in.
	_, part, _ := n.broker.partition(topic, 0)
	if hw := part.log.Offsets().HW; hw != int64(len(sent[0])) {
		t.Fatalf("partition 0 high watermark %d, want %d", hw, len(sent[0]))
	}
}

func TestIdempotenceWithLostResponses(t *testing.T) {
	dir := t.TempDir()
	var cur atomic.Pointer[testNode]
	proxy := newLossyProxy(t, func() string { return cur.Load().addr })
	node := startNode(t, dir, func(c *Config, _ *storage.Config) { c.Listeners = map[string]string{"kafka": proxy.addr()} })
	cur.Store(node)
	if _, err := node.admin().CreateTopic(ctxT(t), 4, 1, nil, "idem"); err != nil {
		t.Fatal(err)
	}
	proxy.drops.Store(5)
	prod, err := kgo.NewClient(kgo.SeedBrokers(proxy.addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()), fastRetries)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const total = 4000
	sent := produceN(t, prod, "idem", total, 4)
	if proxy.dropped.Load() != 5 {
		t.Fatalf("only %d responses were lost; the test did not exercise retries", proxy.dropped.Load())
	}
	checkExactlyOnce(t, node, "idem", 4, sent, total)
}

func TestIdempotenceAcrossARestart(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			dir := t.TempDir()
			var proxy *lossyProxy
			var mu sync.Mutex
			var node *testNode
			cur := func() *testNode { mu.Lock(); defer mu.Unlock(); return node }
			proxy = newLossyProxy(t, func() string { return cur().addr })
			adv := func(c *Config, _ *storage.Config) { c.Listeners = map[string]string{"kafka": proxy.addr()} }
			mu.Lock()
			node = startNode(t, dir, adv)
			mu.Unlock()
			if _, err := cur().admin().CreateTopic(ctxT(t), 1, 1, nil, "idem"); err != nil {
				t.Fatal(err)
			}
			restarts := 0
			proxy.onDrop = func() {
				// The broker appended a batch whose answer is lost; it
				// restarts before the producer retries.
				mu.Lock()
				defer mu.Unlock()
				addr := node.addr
				if clean {
					node.stop()
				} else {
					node.crash()
				}
				node = startNodeAt(t, dir, addr, adv)
				restarts++
			}
			proxy.drops.Store(3)
			prod, err := kgo.NewClient(kgo.SeedBrokers(proxy.addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(50), fastRetries)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			const total = 2000
			sent := produceN(t, prod, "idem", total, 1)
			if restarts != 3 {
				t.Fatalf("%d restarts, want 3", restarts)
			}
			checkExactlyOnce(t, cur(), "idem", 1, sent, total)
		})
	}
}
