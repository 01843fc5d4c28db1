package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
)

const topic = "eddy-sdk"

// advertised is kfake's TCP listener reporting the QUIC proxy's address,
// so that kfake's metadata sends clients to the proxy, and counting the
// connections kfake accepts.
type advertised struct {
	net.Listener
	addr     net.Addr
	accepted *atomic.Int64
}

func (l advertised) Addr() net.Addr { return l.addr }

func (l advertised) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// quicProxy is a QUIC server whose eddy-kafka/1 streams are piped, one TCP
// connection each, to a kfake broker that advertises the proxy's address.
type quicProxy struct {
	addr     string
	ca       []byte
	id       *tlsid.Identity
	accepted atomic.Int64 // TCP connections kfake accepted
	proxied  atomic.Int64 // TCP connections the proxy opened
	mu       sync.Mutex
	conns    []*quicgo.Conn
}

func startProxy(t *testing.T) *quicProxy {
	t.Helper()
	id, err := tlsid.Load(tlsid.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	udp := pc.LocalAddr().(*net.UDPAddr)
	p := &quicProxy{addr: udp.String(), ca: id.CAPEM, id: id}

	var kfakeAddr string
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(1, topic),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			kfakeAddr = ln.Addr().String()
			return advertised{ln, &net.TCPAddr{IP: udp.IP, Port: udp.Port}, &p.accepted}, nil
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	if got := cluster.ListenAddrs(); len(got) != 1 || got[0] != p.addr {
		t.Fatalf("kfake advertises %v, want the proxy %s", got, p.addr)
	}

	srv, err := quic.NewServer(pc, id.ServerConfig(), quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pipe := quic.StreamHandler(func(ctx context.Context, c net.Conn) {
		tcp, err := net.Dial("tcp", kfakeAddr)
		if err != nil {
			t.Errorf("proxy dial kfake: %v", err)
			return
		}
		p.proxied.Add(1)
		up := make(chan struct{})
		go func() {
			io.Copy(tcp, c)
			tcp.(*net.TCPConn).CloseWrite()
			close(up)
		}()
		io.Copy(c, tcp)
		tcp.Close()
		c.Close()
		<-up
	})
	srv.Handle(quic.ALPNKafka, func(ctx context.Context, c *quicgo.Conn) {
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		pipe(ctx, c)
	})
	go srv.Serve(context.Background())
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return p
}

func TestProduceConsumeOverQUIC(t *testing.T) {
	p := startProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	producer, err := New(Brokers(p.addr), CAPEM(p.ca), KgoOpts(kgo.DefaultProduceTopic(topic)))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	records := make([]*kgo.Record, n)
	for i := range records {
		records[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "record-%04d", i)}
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	producer.Close()

	consumer, err := New(Brokers(p.addr), CAPEM(p.ca), KgoOpts(
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup("eddy-sdk-test"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	))
	if err != nil {
		t.Fatal(err)
	}
	var got []*kgo.Record
	for len(got) < n {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(got), n)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs[0].Err)
		}
		got = append(got, fetches.Records()...)
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	consumer.Close()

	if len(got) != n {
		t.Fatalf("consumed %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if r.Offset != int64(i) || string(r.Value) != string(records[i].Value) || string(r.Key) != string(records[i].Key) {
			t.Fatalf("record %d: offset %d %q=%q, want offset %d %q=%q", i, r.Offset, r.Key, r.Value, i, records[i].Key, records[i].Value)
		}
	}

	// Every connection kfake served came through a QUIC stream.
	if p.proxied.Load() == 0 || p.accepted.Load() != p.proxied.Load() {
		t.Errorf("kfake accepted %d TCP connections, the QUIC proxy opened %d", p.accepted.Load(), p.proxied.Load())
	}
	// Closing the clients closed their QUIC connections: one per client.
	p.mu.Lock()
	conns := append([]*quicgo.Conn(nil), p.conns...)
	p.mu.Unlock()
	if len(conns) != 2 {
		t.Errorf("two clients made %d QUIC connections, want 2", len(conns))
	}
	for _, c := range conns {
		select {
		case <-c.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a QUIC connection outlived its closed client")
		}
		var app *quicgo.ApplicationError
		if cause := context.Cause(c.Context()); !errors.As(cause, &app) || !app.Remote {
			t.Errorf("connection ended with %v, want the client's close", cause)
		}
	}
}

func TestPinnedBroker(t *testing.T) {
	p := startProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, fp := range []string{p.id.Fingerprint(), p.id.CAFingerprint()} {
		cl, err := New(Brokers(p.addr), PinSHA256(fp))
		if err != nil {
			t.Fatal(err)
		}
		err = cl.Ping(ctx)
		cl.Close()
		if err != nil {
			t.Fatalf("ping with %s pinned: %v", fp, err)
		}
	}

	wrong, err := New(Brokers(p.addr), PinSHA256(fmt.Sprintf("sha256:%064x", 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if err := wrong.Ping(short); err == nil || !strings.Contains(err.Error(), "does not match the pin") {
		t.Fatalf("ping with a wrong pin: %v, want the pin refused", err)
	}
}

func TestPlainTCPTransport(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := New(Transport("tcp"), Brokers(cluster.ListenAddrs()...), KgoOpts(
		kgo.DefaultProduceTopic(topic),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("plain")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fetches := cl.PollFetches(ctx)
	if recs := fetches.Records(); len(recs) != 1 || string(recs[0].Value) != "plain" {
		t.Fatalf("consumed %v (%v)", recs, fetches.Errors())
	}
}

func TestOptionErrors(t *testing.T) {
	cases := map[string][]Option{
		"unknown transport":    {Transport("udp")},
		"TLS over tcp":         {Transport("tcp"), CAPEM([]byte("x"))},
		"TLSConfig and CAPEM":  {TLSConfig(&tls.Config{}), CAPEM([]byte("x"))},
		"bad pin":              {PinSHA256("sha256:beef")},
		"CA PEM without certs": {CAPEM([]byte("not a certificate"))},
		"missing CA file":      {CAFile("/nonexistent/eddy/ca.pem")},
		"bad broker":           {Brokers("[::1")},
	}
	for name, opts := range cases {
		if cl, err := New(opts...); err == nil {
			cl.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
	for in, want := range map[string]string{
		"edge-1":         "edge-1:9093",
		"edge-1:19093":   "edge-1:19093",
		"10.0.0.1":       "10.0.0.1:9093",
		"::1":            "[::1]:9093",
		"[fd00::1]":      "[fd00::1]:9093",
		"[fd00::1]:9000": "[fd00::1]:9000",
	} {
		if got, err := withPort(in); err != nil || got != want {
			t.Errorf("withPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
