package netsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
)

func udp(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// recv reads one packet within d, or reports that none came.
func recv(t *testing.T, pc net.PacketConn, d time.Duration) (string, bool) {
	t.Helper()
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(d))
	n, _, err := pc.ReadFrom(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), true
}

func TestDropAllBothDirections(t *testing.T) {
	a, b := Wrap(udp(t)), udp(t)
	defer a.Close()

	a.SetDropAll(true)
	if n, err := a.WriteTo([]byte("lost"), b.LocalAddr()); n != 4 || err != nil {
		t.Fatalf("swallowed write returned %d, %v; want success", n, err)
	}
	b.WriteTo([]byte("lost too"), a.LocalAddr())
	if got, ok := recv(t, a, 200*time.Millisecond); ok {
		t.Fatalf("read %q through a blackout", got)
	}

	a.SetDropAll(false)
	a.WriteTo([]byte("out"), b.LocalAddr())
	if got, _ := recv(t, b, 5*time.Second); got != "out" {
		t.Fatalf("first packet after the blackout: %q, want %q (the dropped one must never arrive)", got, "out")
	}
	b.WriteTo([]byte("in"), a.LocalAddr())
	if got, _ := recv(t, a, 5*time.Second); got != "in" {
		t.Fatalf("read %q after the blackout, want %q", got, "in")
	}
	want := Stats{Sent: 1, Received: 1, DroppedOut: 1, DroppedIn: 1}
	if s := a.Stats(); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

func TestRandomLoss(t *testing.T) {
	a, b := Wrap(udp(t)), udp(t)
	defer a.Close()
	b.SetReadBuffer(4 << 20)
	a.SetSeed(7)
	a.SetLoss(0.3)
	const total = 400
	received := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 64)
		for {
			// The last packet is followed by a second of silence.
			b.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := b.ReadFrom(buf); err != nil {
				break
			}
			n++
		}
		received <- n
	}()
	for i := range total {
		a.WriteTo(fmt.Appendf(nil, "%d", i), b.LocalAddr())
	}
	s := a.Stats()
	if s.Sent+s.DroppedOut != total || s.DroppedOut < total/5 || s.DroppedOut > total*2/5 {
		t.Fatalf("stats %+v: want about 30%% of %d dropped", s, total)
	}
	if n := <-received; uint64(n) != s.Sent {
		t.Errorf("peer received %d packets, %d were sent", n, s.Sent)
	}

	a.SetLoss(1)
	a.WriteTo([]byte("x"), b.LocalAddr())
	a.SetLoss(0)
	a.WriteTo([]byte("y"), b.LocalAddr())
	if got, _ := recv(t, b, 5*time.Second); got != "y" {
		t.Errorf("got %q: loss 1 must drop, loss 0 must not", got)
	}
}

func TestDelayKeepsOrder(t *testing.T) {
	a, b := Wrap(udp(t)), udp(t)
	defer a.Close()
	const delay = 50 * time.Millisecond
	a.SetDelay(delay)
	start := time.Now()
	for i := range 50 {
		a.WriteTo(fmt.Appendf(nil, "%d", i), b.LocalAddr())
	}
	for i := range 50 {
		got, ok := recv(t, b, 5*time.Second)
		if !ok || got != fmt.Sprint(i) {
			t.Fatalf("packet %d: %q (ok=%v), want in order", i, got, ok)
		}
		if i == 0 && time.Since(start) < delay {
			t.Fatalf("first packet arrived after %v, before the %v delay", time.Since(start), delay)
		}
	}
	a.SetDelay(0)
	a.WriteTo([]byte("now"), b.LocalAddr())
	if got, _ := recv(t, b, 5*time.Second); got != "now" {
		t.Errorf("got %q after removing the delay", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
}

// TestQUICSurvivesBlackout cuts a client's UDP path for five seconds, less
// than the idle timeout, while it writes on a stream: the write completes
// after the path returns, intact, on the same connection.
func TestQUICSurvivesBlackout(t *testing.T) {
	id, err := tlsid.Load(tlsid.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := quic.NewServer(udp(t), id.ServerConfig(), quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(quic.ALPNKafka, quic.StreamHandler(func(ctx context.Context, c net.Conn) {
		io.Copy(c, c)
	}))
	go srv.Serve(context.Background())
	defer srv.Shutdown(context.Background())

	path := Wrap(udp(t))
	clientTLS, err := tlsid.ClientConfig(tlsid.ClientOptions{CAPEM: id.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	d := quic.NewDialerOn(path, clientTLS, quic.Config{IdleTimeout: 60 * time.Second})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := d.DialContext(ctx, "udp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*quic.StreamConn)
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}

	const blackout = 5 * time.Second
	var restored atomic.Bool
	path.SetDropAll(true)
	timer := time.AfterFunc(blackout, func() {
		restored.Store(true)
		path.SetDropAll(false)
	})
	defer timer.Stop()

	msg := bytes.Repeat([]byte("eddy blackout "), 20000) // 280 kB
	written := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.CloseWrite()
		}
		written <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-written; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !restored.Load() {
		t.Fatal("the echo completed during the blackout")
	}
	if sha256.Sum256(got) != sha256.Sum256(msg) {
		t.Fatalf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
	}
	if s := path.Stats(); s.DroppedOut == 0 {
		t.Errorf("no packet was dropped: %+v", s)
	}
	if err := c.Conn().Context().Err(); err != nil {
		t.Errorf("connection closed: %v", context.Cause(c.Conn().Context()))
	}
}
