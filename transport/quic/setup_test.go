package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/eddybroker/eddy/transport/tlsid"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

// identity is one generated node identity shared by the tests.
var identity *tlsid.Identity

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eddy-quic-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	identity, err = tlsid.Load(tlsid.Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testIdentity(*testing.T) *tlsid.Identity { return identity }

func clientTLS(t *testing.T, alpn ...string) *tls.Config {
	t.Helper()
	conf, err := tlsid.ClientConfig(tlsid.ClientOptions{CAPEM: testIdentity(t).CAPEM, NextProtos: alpn})
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func listenUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// testServer is a running Server with its Serve result.
type testServer struct {
	*Server
	served chan error
	conns  atomic.Int64 // connections handed to handlers
	last   atomic.Pointer[quicgo.Conn]
}

// startServer serves handlers on pc (a fresh loopback socket when nil)
// and shuts the server down when the test ends.
func startServer(t *testing.T, pc net.PacketConn, cfg Config, handlers map[string]ConnHandler) *testServer {
	t.Helper()
	if pc == nil {
		pc = listenUDP(t, "127.0.0.1:0")
	}
	srv, err := NewServer(pc, testIdentity(t).ServerConfig(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, served: make(chan error, 1)}
	for alpn, h := range handlers {
		srv.Handle(alpn, func(ctx context.Context, c *quicgo.Conn) {
			ts.conns.Add(1)
			ts.last.Store(c)
			h(ctx, c)
		})
	}
	go func() { ts.served <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case <-ts.served:
		case <-ctx.Done():
			t.Error("Serve did not return after Shutdown")
		}
	})
	return ts
}

// echo serves each stream by copying it back until the peer finishes.
var echo = StreamHandler(func(ctx context.Context, c net.Conn) {
	io.Copy(c, c)
})

func newDialer(t *testing.T, cfg Config, alpn ...string) *Dialer {
	t.Helper()
	d := NewDialer(clientTLS(t, alpn...), cfg)
	t.Cleanup(func() { d.Close() })
	return d
}

func dial(t *testing.T, d *Dialer, addr net.Addr) *StreamConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c.(*StreamConn)
}

// roundTrip writes msg, finishes the send side and returns all it reads.
func roundTrip(c *StreamConn, msg []byte) ([]byte, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, rerr := io.ReadAll(c)
	return got, errors.Join(rerr, <-errc)
}

// waitDone waits for ctx (a connection's context) to end and returns its
// cause.
func waitDone(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(testTimeout):
		t.Fatal("connection still open")
		return nil
	}
}
