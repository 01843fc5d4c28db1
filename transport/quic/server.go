package quic

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/eddybroker/eddy/transport/tlsid"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("quic: server closed")

// ConnHandler serves one QUIC connection whose ALPN it was registered for.
// ctx is canceled when the connection closes or the Server shuts down; the
// handler should then return promptly. When it returns, the Server closes
// the connection once the peer has had time to receive what was written.
type ConnHandler func(ctx context.Context, c *quicgo.Conn)

// Server accepts QUIC connections on one UDP socket and routes each by its
// negotiated ALPN protocol.
type Server struct {
	cfg  Config
	log  *slog.Logger
	pc   net.PacketConn
	tr   *quicgo.Transport
	tls  *tls.Config
	base context.Context // canceled when Shutdown begins
	stop context.CancelFunc

	mu       sync.Mutex
	handlers map[string]ConnHandler
	setupErr error
	ln       *quicgo.Listener
	conns    map[*quicgo.Conn]struct{}
	wg       sync.WaitGroup // one per connection goroutine
	closing  bool
	deadline time.Time // end of the shutdown grace period
	done     chan struct{}
	err      error // Shutdown's result, set before done is closed
}

// NewServer returns a Server on pc, which it owns from now on (Shutdown
// closes it). tlsConf supplies the certificate; its NextProtos are replaced
// by the protocols registered with Handle.
func NewServer(pc net.PacketConn, tlsConf *tls.Config, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if pc == nil {
		return nil, errors.New("quic: NewServer: no packet conn")
	}
	if tlsConf == nil || (len(tlsConf.Certificates) == 0 && tlsConf.GetCertificate == nil && tlsConf.GetConfigForClient == nil) {
		return nil, errors.New("quic: NewServer: the TLS config has no certificate")
	}
	var key quicgo.StatelessResetKey
	if cfg.StatelessResetKeyFile != "" {
		b, err := tlsid.LoadOrCreateSecret(cfg.StatelessResetKeyFile, len(key))
		if err != nil {
			return nil, fmt.Errorf("quic: stateless reset key: %w", err)
		}
		copy(key[:], b)
	} else if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("quic: stateless reset key: %w", err)
	}
	base, stop := context.WithCancel(context.Background())
	return &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		pc:       pc,
		tr:       &quicgo.Transport{Conn: pc, StatelessResetKey: &key},
		tls:      tlsConf.Clone(),
		base:     base,
		stop:     stop,
		handlers: make(map[string]ConnHandler),
		conns:    make(map[*quicgo.Conn]struct{}),
		done:     make(chan struct{}),
	}, nil
}

// Handle registers h for connections that negotiate alpn. Handlers are
// registered before Serve; a later registration is ignored and logged, and
// an invalid one makes Serve fail.
func (s *Server) Handle(alpn string, h ConnHandler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case alpn == "" || h == nil:
		s.setupErr = errors.Join(s.setupErr, fmt.Errorf("quic: Handle(%q): empty protocol or nil handler", alpn))
	case s.ln != nil || s.closing:
		s.log.Error("quic: handler registered after Serve; ignored", "alpn", alpn)
	default:
		s.handlers[alpn] = h
	}
}

// Addr is the local UDP address.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Serve accepts connections until Shutdown is called or ctx ends, and runs
// each connection's handler in its own goroutine. When ctx ends, Serve
// shuts the server down gracefully (bounded by ShutdownGrace) and returns
// Shutdown's result; after Shutdown it returns nil. Serve after Shutdown
// returns ErrServerClosed.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closing:
		s.mu.Unlock()
		return ErrServerClosed
	case s.ln != nil:
		s.mu.Unlock()
		return errors.New("quic: Serve called twice")
	case s.setupErr != nil:
		s.mu.Unlock()
		return s.setupErr
	case len(s.handlers) == 0:
		s.mu.Unlock()
		return errors.New("quic: Serve: no handler registered")
	}
	conf := s.tls.Clone()
	conf.MinVersion = tls.VersionTLS13
	conf.NextProtos = slices.Sorted(func(yield func(string) bool) {
		for alpn := range s.handlers {
			if !yield(alpn) {
				return
			}
		}
	})
	ln, err := s.tr.Listen(conf, s.cfg.quicConfig())
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("quic: listen on %s: %w", s.Addr(), err)
	}
	s.ln = ln
	s.mu.Unlock()
	s.log.Debug("quic: serving", "addr", s.Addr(), "alpn", conf.NextProtos)

	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			switch {
			case closing:
				return nil
			case ctx.Err() != nil:
				return s.Shutdown(context.Background())
			}
			return fmt.Errorf("quic: accept on %s: %w", s.Addr(), err)
		}
		s.serveConn(c)
	}
}

func (s *Server) serveConn(c *quicgo.Conn) {
	alpn := c.ConnectionState().TLS.NegotiatedProtocol
	s.mu.Lock()
	h := s.handlers[alpn]
	closing := s.closing
	if h != nil && !closing {
		s.conns[c] = struct{}{}
		s.wg.Add(1)
	}
	s.mu.Unlock()
	switch {
	case closing:
		c.CloseWithError(CodeNoError, "shutdown")
		return
	case h == nil:
		s.log.Debug("quic: refused connection", "remote", c.RemoteAddr(), "alpn", alpn)
		c.CloseWithError(CodeProtocol, fmt.Sprintf("no service for ALPN %q", alpn))
		return
	}
	s.log.Debug("quic: connection", "remote", c.RemoteAddr(), "alpn", alpn)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithCancel(s.base)
		stop := context.AfterFunc(c.Context(), cancel)
		h(ctx, c)
		stop()
		cancel()
		s.closeConn(c)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
}

// closeConn closes c after its handler returned, once the peer has had time
// to receive what was written. CloseWithError discards unacknowledged data,
// so closing at once would cut off the last responses.
func (s *Server) closeConn(c *quicgo.Conn) {
	if c.Context().Err() != nil {
		return
	}
	s.mu.Lock()
	reason, deadline := "", time.Now().Add(s.cfg.ShutdownGrace)
	if s.closing {
		reason, deadline = "shutdown", s.deadline
	}
	s.mu.Unlock()
	awaitDelivery(c, deadline)
	c.CloseWithError(CodeNoError, reason)
}

// maxAckDelay is quic-go's default max_ack_delay transport parameter.
const maxAckDelay = 25 * time.Millisecond

// awaitDelivery returns when the peer has closed c, when deadline passes, or
// when c has sent no packet for two probe timeouts: quic-go sends a probe
// packet when an ack-eliciting packet stays unacknowledged for a probe
// timeout, so a connection that stays silent that long has nothing
// unacknowledged left.
func awaitDelivery(c *quicgo.Conn, deadline time.Time) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	last := c.ConnectionStats().PacketsSent
	quietSince := time.Now()
	for {
		st := c.ConnectionStats()
		pto := st.SmoothedRTT + max(4*st.MeanDeviation, time.Millisecond) + maxAckDelay
		now := time.Now()
		if st.PacketsSent != last {
			last, quietSince = st.PacketsSent, now
		} else if now.Sub(quietSince) >= 2*pto {
			return
		}
		wait := min(pto/2, deadline.Sub(now))
		if wait <= 0 {
			return
		}
		timer.Reset(wait)
		select {
		case <-c.Context().Done():
			return
		case <-timer.C:
		}
	}
}

// Shutdown stops the server gracefully:
//
//  1. it stops accepting connections, and StreamHandler stops accepting
//     streams (new ones are refused with CodeRequestRejected);
//  2. it cancels the handlers' ctx: stream reads return io.EOF, so handlers
//     stop taking requests and finish the responses they owe;
//  3. as each connection's handler returns, it waits until the peer has
//     probably received everything written (see ConnHandler), then closes
//     the connection with CodeNoError and reason "shutdown";
//  4. it closes the UDP socket.
//
// Steps 2–3 are bounded by ShutdownGrace and by ctx. Connections still
// open then are closed at once and Shutdown returns an error; their
// handlers see the closed connection and end on their own. Concurrent
// calls wait for the first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		select {
		case <-s.done:
			return s.err
		case <-ctx.Done():
			return fmt.Errorf("quic: shutdown: %w", ctx.Err())
		}
	}
	s.closing = true
	s.deadline = time.Now().Add(s.cfg.ShutdownGrace)
	if d, ok := ctx.Deadline(); ok && d.Before(s.deadline) {
		s.deadline = d
	}
	ln := s.ln
	s.mu.Unlock()

	if ln != nil {
		ln.Close()
	}
	s.stop()
	idle := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(idle)
	}()
	grace := time.NewTimer(time.Until(s.deadline))
	defer grace.Stop()
	var err error
	select {
	case <-idle:
	case <-grace.C:
		err = s.closeAll(context.DeadlineExceeded)
	case <-ctx.Done():
		err = s.closeAll(ctx.Err())
	}
	if cerr := s.tr.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("quic: close transport: %w", cerr))
	}
	if cerr := s.pc.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("quic: close socket %s: %w", s.Addr(), cerr))
	}
	s.err = err
	close(s.done)
	return err
}

// closeAll closes every open connection at once, after the grace period.
func (s *Server) closeAll(cause error) error {
	s.mu.Lock()
	conns := make([]*quicgo.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(CodeNoError, "shutdown")
	}
	if len(conns) == 0 {
		return nil
	}
	s.log.Error("quic: shutdown grace ended with busy connections", "count", len(conns))
	return fmt.Errorf("quic: shutdown: %d connections still busy: %w", len(conns), cause)
}
