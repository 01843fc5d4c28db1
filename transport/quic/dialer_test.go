package quic

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

func TestDialerReusesOneConnection(t *testing.T) {
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{ALPNKafka: echo})
	d := newDialer(t, Config{})
	// Concurrent first dials share one handshake.
	var wg sync.WaitGroup
	conns := make(chan *quicgo.Conn, 16)
	for range 16 {
		wg.Go(func() {
			c := dial(t, d, srv.Addr())
			conns <- c.Conn()
			c.Close()
		})
	}
	wg.Wait()
	close(conns)
	first := <-conns
	for c := range conns {
		if c != first {
			t.Fatal("concurrent dials made more than one connection")
		}
	}
	for i := range 20 {
		c := dial(t, d, srv.Addr())
		if c.Conn() != first {
			t.Fatalf("dial %d made a new connection", i)
		}
		msg := []byte{byte(i)}
		if got, err := roundTrip(c, msg); err != nil || string(got) != string(msg) {
			t.Fatalf("dial %d: echo %q, %v", i, got, err)
		}
		c.Close()
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("server saw %d connections, want 1", n)
	}
}

func TestDialerRedialsAfterServerRestart(t *testing.T) {
	pc := listenUDP(t, "127.0.0.1:0")
	addr := pc.LocalAddr()
	srv1, err := NewServer(pc, testIdentity(t).ServerConfig(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv1.Handle(ALPNKafka, echo)
	go srv1.Serve(context.Background())
	d := newDialer(t, Config{})
	c := dial(t, d, addr)
	if got, err := roundTrip(c, []byte("one")); err != nil || string(got) != "one" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	old := c.Conn()
	if err := srv1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, old.Context())

	srv2 := startServer(t, listenUDP(t, addr.String()), Config{}, map[string]ConnHandler{ALPNKafka: echo})
	c2 := dial(t, d, addr)
	if c2.Conn() == old {
		t.Fatal("dialer reused the dead connection")
	}
	if got, err := roundTrip(c2, []byte("two")); err != nil || string(got) != "two" {
		t.Fatalf("echo after restart: %q, %v", got, err)
	}
	if srv2.conns.Load() != 1 {
		t.Errorf("restarted server saw %d connections, want 1", srv2.conns.Load())
	}
}

func TestStreamConnBehavesLikeTCP(t *testing.T) {
	serverSide := make(chan net.Conn, 1)
	hold := make(chan struct{})
	handler := StreamHandler(func(ctx context.Context, c net.Conn) {
		serverSide <- c
		io.ReadFull(c, make([]byte, 1))
		c.Write([]byte("bye"))
		<-hold
	})
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{ALPNKafka: handler})
	d := newDialer(t, Config{})
	c := dial(t, d, srv.Addr())
	c.Write([]byte("x"))
	sc := <-serverSide
	if sc.LocalAddr().String() != srv.Addr().String() {
		t.Errorf("server LocalAddr %v, want %v", sc.LocalAddr(), srv.Addr())
	}
	if c.RemoteAddr().String() != srv.Addr().String() {
		t.Errorf("client RemoteAddr %v, want %v", c.RemoteAddr(), srv.Addr())
	}
	if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}

	// A read deadline expires like a TCP one.
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})

	// The server's handler returns: the client reads io.EOF.
	close(hold)
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after the server finished: %d, %v; want io.EOF", n, err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if c.Conn().Context().Err() != nil {
		t.Error("closing a stream closed its connection")
	}
}

func TestClosedStreamsReturnCredit(t *testing.T) {
	// The handler answers without reading the request to its end; the
	// client closes after reading the answer. Unless both sides finish
	// both directions, each stream keeps one of the 4 credits forever.
	handler := StreamHandler(func(ctx context.Context, c net.Conn) {
		io.ReadFull(c, make([]byte, 1))
		c.Write([]byte("k"))
	})
	srv := startServer(t, nil, Config{MaxIncomingStreams: 4}, map[string]ConnHandler{ALPNKafka: handler})
	d := newDialer(t, Config{})
	for i := range 40 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nc, err := d.DialContext(ctx, "tcp", srv.Addr().String())
		cancel()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		nc.SetDeadline(time.Now().Add(testTimeout))
		nc.Write([]byte("request that is longer than what the handler reads"))
		if _, err := io.ReadFull(nc, make([]byte, 1)); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		nc.Close()
	}
}

func TestDialerClosesIdleConnections(t *testing.T) {
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{ALPNKafka: echo})
	d := newDialer(t, Config{IdleTimeout: 200 * time.Millisecond})
	c := dial(t, d, srv.Addr())
	if _, err := roundTrip(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	serverConn := srv.last.Load()
	cause := waitDone(t, serverConn.Context())
	var app *quicgo.ApplicationError
	if !errors.As(cause, &app) || !app.Remote || app.ErrorMessage != "idle" {
		t.Fatalf("server side ended with %v, want the client's idle close", cause)
	}
	c2 := dial(t, d, srv.Addr())
	if got, err := roundTrip(c2, []byte("again")); err != nil || string(got) != "again" {
		t.Fatalf("echo after idle close: %q, %v", got, err)
	}
}

func TestDialerClose(t *testing.T) {
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{ALPNKafka: echo})
	d := NewDialer(clientTLS(t), Config{})
	c := dial(t, d, srv.Addr())
	if _, err := roundTrip(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	cause := waitDone(t, srv.last.Load().Context())
	var app *quicgo.ApplicationError
	if !errors.As(cause, &app) || app.ErrorMessage != "client closed" {
		t.Errorf("server side ended with %v, want the client's close", cause)
	}
	if _, err := d.DialContext(context.Background(), "tcp", srv.Addr().String()); !errors.Is(err, ErrDialerClosed) {
		t.Errorf("DialContext after Close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newDialer(t, Config{}).DialContext(ctx, "tcp", srv.Addr().String()); !errors.Is(err, context.Canceled) {
		t.Errorf("DialContext with a canceled context: %v", err)
	}
}
