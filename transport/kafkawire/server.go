package kafkawire

import (
	"context"
	"errors"
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
	active   atomic.Int64
	accepted atomic.Uint64
}

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
// it ends or the server shuts down. It does not close c.
func (s *Server) ServeConn(c net.Conn) error {
	s.accepted.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
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

// Active returns the connections being served; Accepted counts all so far.
func (s *Server) Active() int64    { return s.active.Load() }
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

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
