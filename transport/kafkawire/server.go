package kafkawire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves Kafka connections from a net.Listener (TCP) or handed to it
// one by one (QUIC streams), and shuts them down gracefully.
type Server struct {
	Handler  Handler
	Config   Config
	Listener string // the name requests see in ConnInfo.Listener

	stopping chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	accepted atomic.Uint64
	refused  atomic.Uint64

	lastRefusalLog atomic.Int64 // unix ns

	mu    sync.Mutex
	conns int            // served now
	perIP map[string]int // served now, by remote address; only with MaxConnsPerIP
}

// refusalLogInterval spaces the log lines about refused connections.
const refusalLogInterval = 10 * time.Second

// ErrTooManyConns is returned by ServeConn for a connection beyond
// Config.MaxConns or Config.MaxConnsPerIP.
var ErrTooManyConns = errors.New("kafkawire: too many connections")

// NewServer returns a server for handler on the named listener.
func NewServer(listener string, h Handler, cfg Config) *Server {
	return &Server{Handler: h, Config: cfg, Listener: listener, stopping: make(chan struct{})}
}

// Serve accepts connections until Shutdown or ctx ends, serving each in its
// own goroutine.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		select {
		case <-ctx.Done():
		case <-s.stopping:
		}
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.stopping:
				return nil
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.ServeConn(c)
		}()
	}
}

// ServeConn serves one connection (a TCP connection or a QUIC stream) until
// it ends or the server shuts down. It does not close c. A connection
// beyond the configured limits is not served: ErrTooManyConns.
func (s *Server) ServeConn(c net.Conn) error {
	s.accepted.Add(1)
	ip := remoteIP(c.RemoteAddr())
	if limit := s.admit(ip); limit != "" {
		s.refused.Add(1)
		if o := s.Config.Observer; o != nil {
			o.ConnRefused(s.Listener, limit)
		}
		err := fmt.Errorf("%w: %s reached on %s, refusing a connection from %s", ErrTooManyConns, limit, s.Listener, ip)
		// At most one line per interval: a flood of refusals is in the metrics.
		if now := time.Now().UnixNano(); now-s.lastRefusalLog.Load() >= int64(refusalLogInterval) {
			s.lastRefusalLog.Store(now)
			if log := s.Config.Logger; log != nil {
				log.Warn("connection refused", "err", err, "refused_so_far", s.refused.Load())
			}
		}
		return err
	}
	defer s.release(ip)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	info := ConnInfo{Listener: s.Listener, Remote: c.RemoteAddr(), Local: c.LocalAddr()}
	return ServeConn(ctx, c, info, s.Handler, s.Config)
}

// Active returns the connections being served; Accepted counts all so
// far, Refused those closed at once for a limit.
func (s *Server) Active() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.conns)
}
func (s *Server) Accepted() uint64 { return s.accepted.Load() }
func (s *Server) Refused() uint64  { return s.refused.Load() }

// admit counts a connection from ip in, or names the limit it is beyond.
func (s *Server) admit(ip string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.Config.MaxConns; m > 0 && s.conns >= m {
		return "max_connections"
	}
	if m := s.Config.MaxConnsPerIP; m > 0 {
		if s.perIP[ip] >= m {
			return "max_connections_per_ip"
		}
		if s.perIP == nil {
			s.perIP = map[string]int{}
		}
		s.perIP[ip]++
	}
	s.conns++
	return ""
}

// release counts a connection admit let in out.
func (s *Server) release(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
	if s.Config.MaxConnsPerIP > 0 {
		if s.perIP[ip]--; s.perIP[ip] == 0 {
			delete(s.perIP, ip)
		}
	}
}

// remoteIP is the address a connection's limit per IP counts it under.
func remoteIP(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// Shutdown stops accepting, lets every connection finish the requests it
// has read and write their responses, and waits for them (bounded by ctx).
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.stopping) })
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
