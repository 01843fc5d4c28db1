package quic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/eddybroker/eddy/transport/netsim"
)

func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	got.Logger = nil
	if got != DefaultConfig() {
		t.Errorf("zero config took %+v, want the defaults %+v", got, DefaultConfig())
	}
	d := DefaultConfig()
	if d.HandshakeTimeout != 10*time.Second || d.IdleTimeout != 60*time.Second || d.KeepAlivePeriod != 15*time.Second ||
		d.InitialStreamWindow != 512<<10 || d.MaxStreamWindow != 16<<20 || d.InitialConnWindow != 1<<20 ||
		d.MaxConnWindow != 64<<20 || d.MaxIncomingStreams != 256 || d.ShutdownGrace != 10*time.Second {
		t.Errorf("defaults %+v", d)
	}
	kept := Config{IdleTimeout: time.Second, MaxStreamWindow: 32 << 20}.withDefaults()
	if kept.IdleTimeout != time.Second || kept.MaxStreamWindow != 32<<20 || kept.KeepAlivePeriod != 15*time.Second {
		t.Errorf("set fields not kept: %+v", kept)
	}
	bad := Config{IdleTimeout: -time.Second, InitialConnWindow: 8 << 20, MaxConnWindow: 1 << 20}.withDefaults()
	err := bad.validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"IdleTimeout", "MaxConnWindow"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := NewServer(listenUDP(t, "127.0.0.1:0"), testIdentity(t).ServerConfig(), bad); err == nil {
		t.Error("NewServer accepted an invalid config")
	}
	if _, err := NewDialer(nil, bad).DialContext(context.Background(), "udp", "127.0.0.1:1"); err == nil {
		t.Error("DialContext accepted an invalid config")
	}
}

func TestEchoManyConcurrentStreams(t *testing.T) {
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{ALPNKafka: echo})
	d := newDialer(t, Config{})
	const streams = 64
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			msg := make([]byte, 1+rand.IntN(256<<10))
			for j := range msg {
				msg[j] = byte(i + j)
			}
			c := dial(t, d, srv.Addr())
			got, err := roundTrip(c, msg)
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			if !bytes.Equal(got, msg) {
				t.Errorf("stream %d: echoed %d bytes differ from the %d sent", i, len(got), len(msg))
			}
		})
	}
	wg.Wait()
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d streams used %d connections, want 1", streams, n)
	}
}

func TestALPNRouting(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{}
	answer := func(name string) ConnHandler {
		return StreamHandler(func(ctx context.Context, c net.Conn) {
			sc := c.(*StreamConn)
			mu.Lock()
			seen[name] = append(seen[name], sc.Conn().ConnectionState().TLS.NegotiatedProtocol)
			mu.Unlock()
			io.Copy(io.Discard, c)
			c.Write([]byte(name))
		})
	}
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{
		ALPNKafka: answer("kafka"),
		ALPNLink:  answer("link"),
	})
	for alpn, want := range map[string]string{ALPNKafka: "kafka", ALPNLink: "link"} {
		c := dial(t, newDialer(t, Config{}, alpn), srv.Addr())
		got, err := roundTrip(c, []byte("?"))
		if err != nil {
			t.Fatalf("%s: %v", alpn, err)
		}
		if string(got) != want {
			t.Errorf("%s reached %q, want %q", alpn, got, want)
		}
		if p := c.Conn().ConnectionState().TLS.NegotiatedProtocol; p != alpn {
			t.Errorf("negotiated %q, want %q", p, alpn)
		}
	}
	mu.Lock()
	if len(seen["kafka"]) != 1 || seen["kafka"][0] != ALPNKafka || len(seen["link"]) != 1 || seen["link"][0] != ALPNLink {
		t.Errorf("handlers saw %v", seen)
	}
	mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := newDialer(t, Config{}, "bogus/1").DialContext(ctx, "udp", srv.Addr().String())
	var terr *quicgo.TransportError
	if !errors.As(err, &terr) {
		t.Fatalf("unknown ALPN: err = %v, want a transport error refusing the handshake", err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("handlers got %d connections, want 2", n)
	}
}

func TestServeErrors(t *testing.T) {
	srv, err := NewServer(listenUDP(t, "127.0.0.1:0"), testIdentity(t).ServerConfig(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); err == nil {
		t.Error("Serve without handlers succeeded")
	}
	srv.Handle("", echo)
	srv.Handle(ALPNKafka, echo)
	if err := srv.Serve(context.Background()); err == nil {
		t.Error("Serve with an invalid registration succeeded")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v, want ErrServerClosed", err)
	}
	if _, err := NewServer(listenUDP(t, "127.0.0.1:0"), nil, Config{}); err == nil {
		t.Error("NewServer without TLS succeeded")
	}
}

// crash stops a server the way a killed process does: no CONNECTION_CLOSE.
func crash(s *Server) {
	s.tr.Close()
	s.pc.Close()
}

func TestStatelessResetKeySurvivesRestart(t *testing.T) {
	keyFile := t.TempDir() + "/quic/reset.key"
	cfg := Config{StatelessResetKeyFile: keyFile}
	srv1, err := NewServer(listenUDP(t, "127.0.0.1:0"), testIdentity(t).ServerConfig(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv1.Handle(ALPNKafka, echo)
	go srv1.Serve(context.Background())
	addr := srv1.Addr()
	key1, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyFile); len(key1) != 32 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file holds %d bytes, mode %v", len(key1), fi.Mode().Perm())
	}

	d := newDialer(t, Config{})
	old := dial(t, d, addr)
	if got, err := roundTrip(old, []byte("before")); err != nil || string(got) != "before" {
		t.Fatalf("echo before restart: %q, %v", got, err)
	}
	oldConn := old.Conn()

	crash(srv1)
	srv2 := startServer(t, listenUDP(t, addr.String()), cfg, map[string]ConnHandler{ALPNKafka: echo})
	key2, err := os.ReadFile(keyFile)
	if err != nil || !bytes.Equal(key1, key2) {
		t.Fatalf("key changed across the restart (%v)", err)
	}

	// Any packet on the old connection now draws a stateless reset; the
	// idle timeout (60s) would take far longer.
	start := time.Now()
	if s, err := oldConn.OpenStream(); err == nil {
		s.Write([]byte("after"))
	}
	cause := waitDone(t, oldConn.Context())
	var reset *quicgo.StatelessResetError
	if !errors.As(cause, &reset) {
		t.Fatalf("old connection ended with %v, want a stateless reset", cause)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("reset took %v", took)
	}
	// The dialer moves on to the new server.
	c := dial(t, d, addr)
	if got, err := roundTrip(c, []byte("after")); err != nil || string(got) != "after" {
		t.Fatalf("echo after restart: %q, %v", got, err)
	}
	if srv2.conns.Load() != 1 {
		t.Errorf("new server saw %d connections", srv2.conns.Load())
	}
}

func TestShutdownDeliversResponseInFlight(t *testing.T) {
	response := make([]byte, 8<<20)
	for i := range response {
		response[i] = byte(i * 7)
	}
	written := make(chan struct{})
	handler := StreamHandler(func(ctx context.Context, c net.Conn) {
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return
		}
		if _, err := c.Write(response); err != nil {
			t.Errorf("write response: %v", err)
		}
		close(written)
		// Wait for the next request, which Shutdown cuts short.
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read after shutdown: %v, want io.EOF", err)
		}
	})
	srv := startServer(t, nil, Config{}, map[string]ConnHandler{ALPNKafka: handler})
	// A slow path keeps much of the response in flight when Shutdown runs.
	pc := netsim.Wrap(listenUDP(t, "127.0.0.1:0"))
	pc.SetDelay(20 * time.Millisecond)
	d := NewDialerOn(pc, clientTLS(t), Config{})
	t.Cleanup(func() { d.Close() })
	c := dial(t, d, srv.Addr())
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("read response: %v", err)
		}
		got <- b
	}()
	<-written
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	b := <-got
	if len(b) != len(response) || sha256.Sum256(b) != sha256.Sum256(response) {
		t.Fatalf("client received %d bytes, want the %d-byte response intact", len(b), len(response))
	}
	cause := waitDone(t, c.Conn().Context())
	var app *quicgo.ApplicationError
	if !errors.As(cause, &app) || app.ErrorCode != CodeNoError || app.ErrorMessage != "shutdown" || !app.Remote {
		t.Errorf("connection ended with %v, want the server's shutdown", cause)
	}
}

func TestShutdownWaitsForHandlersAndRefusesNewStreams(t *testing.T) {
	busyStarted := make(chan struct{})
	stopping := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	handler := StreamHandler(func(ctx context.Context, c net.Conn) {
		req := make([]byte, 1)
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		if req[0] == 'w' {
			// An in-flight request: answered only after Shutdown began.
			close(busyStarted)
			<-ctx.Done()
			once.Do(func() { close(stopping) })
			<-release
		}
		c.Write([]byte("done"))
		// An idle stream: Shutdown ends the read.
		c.Read(make([]byte, 1))
	})
	srv := startServer(t, nil, Config{ShutdownGrace: testTimeout}, map[string]ConnHandler{ALPNKafka: handler})
	d := newDialer(t, Config{})

	idle := dial(t, d, srv.Addr())
	idle.Write([]byte("i"))
	if _, err := io.ReadFull(idle, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	busy := dial(t, d, srv.Addr())
	busy.Write([]byte("w"))
	<-busyStarted

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	<-stopping

	// The idle stream ends cleanly.
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("idle stream: read %d, %v; want io.EOF", n, err)
	}
	// A new stream is refused, retriably.
	late := dial(t, d, srv.Addr())
	late.Write([]byte("i"))
	_, err := io.ReadAll(late)
	var serr *quicgo.StreamError
	if !errors.As(err, &serr) || serr.ErrorCode != CodeRequestRejected || !serr.Remote {
		t.Errorf("stream opened during shutdown: %v, want rejected", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before the busy handler finished", err)
	default:
	}
	close(release)
	got, err := io.ReadAll(busy)
	if err != nil || string(got) != "done" {
		t.Errorf("busy stream got %q, %v; want its response", got, err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestShutdownGraceBoundsStuckHandlers(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	started := make(chan struct{})
	handler := StreamHandler(func(ctx context.Context, c net.Conn) {
		close(started)
		<-block // ignores ctx
	})
	srv := startServer(t, nil, Config{ShutdownGrace: 300 * time.Millisecond}, map[string]ConnHandler{ALPNKafka: handler})
	c := dial(t, newDialer(t, Config{}), srv.Addr())
	c.Write([]byte("x"))
	<-started
	err := srv.Shutdown(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck handler: %v, want a deadline error", err)
	}
	waitDone(t, c.Conn().Context())
}

func TestServeContextEndShutsDown(t *testing.T) {
	srv, err := NewServer(listenUDP(t, "127.0.0.1:0"), testIdentity(t).ServerConfig(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(ALPNKafka, echo)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	c := dial(t, newDialer(t, Config{}), srv.Addr())
	if got, err := roundTrip(c, []byte("x")); err != nil || string(got) != "x" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after its context ended: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after its context ended")
	}
	var app *quicgo.ApplicationError
	if cause := waitDone(t, c.Conn().Context()); !errors.As(cause, &app) || app.ErrorMessage != "shutdown" {
		t.Errorf("connection ended with %v, want the server's shutdown", cause)
	}
	if err := srv.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after shutdown: %v", err)
	}
}
