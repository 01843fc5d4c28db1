package broker

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/metadata"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testNode is a broker on real files and a real TCP listener.
type testNode struct {
	t      testing.TB
	dir    string
	addr   string
	store  *storage.Store
	broker *Broker
	srv    *kafkawire.Server
	ln     net.Listener
	done   chan error
}

type nodeOpt func(*Config, *storage.Config)

func startNode(t testing.TB, dir string, opts ...nodeOpt) *testNode {
	t.Helper()
	return startNodeAt(t, dir, "127.0.0.1:0", opts...)
}

func startNodeAt(t testing.TB, dir, addr string, opts ...nodeOpt) *testNode {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	scfg := storage.Config{Dir: filepath.Join(dir, "data"), Flush: flush.Config{Mode: flush.Group, MaxDelay: 2 * time.Millisecond}}
	bcfg := Config{
		NodeID:           1,
		Listeners:        map[string]string{"kafka": ln.Addr().String()},
		AutoCreateTopics: true,
		ValidateRecords:  true,
	}
	for _, o := range opts {
		o(&bcfg, &scfg)
	}
	st, err := storage.Open(vfs.OS, scfg)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.OpenLocal(vfs.OS, filepath.Join(dir, "meta"), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(bcfg, st, meta)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, dir: dir, addr: ln.Addr().String(), store: st, broker: b, ln: ln, done: make(chan error, 1)}
	n.srv = kafkawire.NewServer("kafka", b, kafkawire.Config{})
	go func() { n.done <- n.srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() { n.stop() })
	return n
}

// stop shuts the node down cleanly (idempotent).
func (n *testNode) stop() {
	if n.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.srv.Shutdown(ctx)
	<-n.done
	if err := n.broker.Close(); err != nil {
		n.t.Errorf("broker close: %v", err)
	}
	if err := n.store.Close(); err != nil {
		n.t.Errorf("store close: %v", err)
	}
	n.srv = nil
}

func (n *testNode) client(opts ...kgo.Opt) *kgo.Client {
	n.t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(n.addr)}, opts...)...)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(c.Close)
	return c
}

func (n *testNode) admin() *kadm.Client { return kadm.NewClient(n.client()) }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// crash stops the node without any clean-shutdown work: no producer
// snapshots, no index files, no clean-shutdown marker. What was flushed is
// on disk; the rest is what the page cache holds, as after kill -9.
func (n *testNode) crash() {
	if n.srv == nil {
		return
	}
	n.ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.srv.Shutdown(ctx) // stop accepting; do not wait
	n.store.Abandon()
	n.srv = nil
}

func storageTP(topic string, p int32) storage.TopicPartition {
	return storage.TopicPartition{Topic: topic, Partition: p}
}
