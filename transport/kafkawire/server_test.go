package kafkawire

import (
	"bufio"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// addrConn is one end of a pipe that says it comes from remote.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// refusals records ConnRefused.
type refusals struct {
	mu     sync.Mutex
	limits []string
}

func (r *refusals) ConnOpened(string) {}
func (r *refusals) ConnClosed(string) {}
func (r *refusals) Request(string, int16, int, int, time.Duration) {
}
func (r *refusals) ConnRefused(_, limit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = append(r.limits, limit)
}

// TestConnectionLimits: a server serves at most MaxConns connections and
// MaxConnsPerIP from one address; one beyond is closed at once, named
// and counted, and a slot is free again when a connection ends.
func TestConnectionLimits(t *testing.T) {
	obs := &refusals{}
	s := NewServer("test", &testHandler{}, Config{MaxConns: 3, MaxConnsPerIP: 2, Observer: obs})
	t.Cleanup(func() { s.Shutdown(t.Context()) })
	type conn struct {
		client net.Conn
		done   chan error
	}
	open := func(ip string) conn {
		a, b := net.Pipe()
		c := conn{a, make(chan error, 1)}
		go func() {
			c.done <- s.ServeConn(addrConn{b, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
			b.Close()
		}()
		return c
	}
	// served reports whether the connection answers a request.
	served := func(c conn) bool {
		go c.client.Write(AppendRequest(nil, 1, nil, kmsg.NewPtrApiVersionsRequest()))
		if _, err := ReadFrame(bufio.NewReader(c.client), 1<<20); err != nil {
			return false
		}
		return true
	}
	refused := func(c conn, limit string) {
		t.Helper()
		if err := <-c.done; !errors.Is(err, ErrTooManyConns) {
			t.Fatalf("connection beyond %s: %v, want ErrTooManyConns", limit, err)
		}
		if served(c) {
			t.Fatalf("a connection beyond %s was served", limit)
		}
	}
	a1, a2 := open("10.0.0.1"), open("10.0.0.1")
	if !served(a1) || !served(a2) {
		t.Fatal("the first two connections from one address were not served")
	}
	refused(open("10.0.0.1"), "max_connections_per_ip")
	b1 := open("10.0.0.2")
	if !served(b1) {
		t.Fatal("a connection from another address was not served")
	}
	refused(open("10.0.0.3"), "max_connections")
	a1.client.Close()
	if err := <-a1.done; err != nil {
		t.Fatalf("a closed connection: %v", err)
	}
	if c := open("10.0.0.3"); !served(c) {
		t.Fatal("the slot of a closed connection was not given to the next")
	}
	if s.Refused() != 2 || !slices.Equal(obs.limits, []string{"max_connections_per_ip", "max_connections"}) {
		t.Fatalf("refused %d, observed %v", s.Refused(), obs.limits)
	}
}
