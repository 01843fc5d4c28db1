// Package quic is Eddy's QUIC transport, built on quic-go.
//
// One UDP port serves every service; the TLS ALPN protocol picks which:
// ALPNKafka (client traffic and follower fetch), ALPNRaft (the metadata
// quorum), ALPNLink (federation) and ALPNH3 (the admin API over HTTP/3).
//
// Server accepts connections on one quic.Transport and hands each to the
// ConnHandler registered for its ALPN. StreamHandler adapts a per-stream
// function to a ConnHandler: every bidirectional stream the peer opens is
// served as a net.Conn, so a QUIC stream carries exactly what a Kafka TCP
// connection carries and the TCP and QUIC listeners share their handlers.
//
// Dialer is the client side: one QUIC connection per broker address, one new
// bidirectional stream per DialContext, returned as a net.Conn that behaves
// like a TCP connection (io.EOF when the peer finishes, deadlines). It plugs
// into franz-go as kgo.Dialer(d.DialContext).
//
// QUIC differs from TCP in three ways this package hides from its callers:
// closing a connection discards data the peer has not acknowledged, a
// stream's Close finishes only the send direction, and a stream whose
// receive direction is never finished keeps counting against the peer's
// stream limit. Stream conns therefore close both directions, and the
// Server lets peers receive what was written before it closes connections.
package quic

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// ALPN protocol identifiers served on Eddy's QUIC port.
const (
	ALPNKafka = "eddy-kafka/1"
	ALPNRaft  = "eddy-raft/1"
	ALPNLink  = "eddy-link/1"
	ALPNH3    = "h3"
)

// Application error codes, used both when closing connections
// (quic.ApplicationErrorCode) and when aborting streams
// (quic.StreamErrorCode).
const (
	// CodeNoError closes without a problem: shutdown, idle, done.
	CodeNoError = 0
	// CodeProtocol refuses a peer that broke the protocol, such as an
	// unserved ALPN.
	CodeProtocol = 1
	// CodeRequestRejected refuses a stream unprocessed; the peer may retry
	// it elsewhere. Streams opened during Shutdown get it.
	CodeRequestRejected = 2
	// CodeCancelled aborts a stream whose conn was closed mid-write.
	CodeCancelled = 3
)

// Config tunes the QUIC endpoints. Zero fields take the values of
// DefaultConfig.
type Config struct {
	// HandshakeTimeout bounds the handshake (quic-go's HandshakeIdleTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that received nothing for this long
	// (the smaller of both peers' values applies). A Dialer also closes a
	// connection that had no open stream for this long.
	IdleTimeout time.Duration
	// KeepAlivePeriod is how often an idle connection is pinged, to keep
	// NAT bindings open.
	KeepAlivePeriod time.Duration
	// Flow-control windows, per stream and per connection. The initial
	// values travel in the handshake; auto-tuning grows them up to the
	// maximum when the peer keeps up.
	InitialStreamWindow, MaxStreamWindow uint64
	InitialConnWindow, MaxConnWindow     uint64
	// MaxIncomingStreams bounds the bidirectional streams a peer may have
	// open at once on one connection.
	MaxIncomingStreams int64
	// ShutdownGrace bounds a graceful Server.Shutdown.
	ShutdownGrace time.Duration
	// StatelessResetKeyFile persists the server's stateless reset key (32
	// bytes, created 0600 on first use). With the same key after a restart,
	// the peers of the old process learn within a round trip that their
	// connections are gone instead of waiting out IdleTimeout. Empty means a
	// random key per process.
	StatelessResetKeyFile string
	// Logger receives debug and error records; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: handshake 10s, idle 60s, keep-alive
// 15s, windows 512KiB/16MiB per stream and 1MiB/64MiB per connection, 256
// concurrent streams, shutdown grace 10s.
func DefaultConfig() Config {
	return Config{
		HandshakeTimeout:    10 * time.Second,
		IdleTimeout:         60 * time.Second,
		KeepAlivePeriod:     15 * time.Second,
		InitialStreamWindow: 512 << 10,
		MaxStreamWindow:     16 << 20,
		InitialConnWindow:   1 << 20,
		MaxConnWindow:       64 << 20,
		MaxIncomingStreams:  256,
		ShutdownGrace:       10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	setDefault(&c.KeepAlivePeriod, d.KeepAlivePeriod)
	setDefault(&c.InitialStreamWindow, d.InitialStreamWindow)
	setDefault(&c.MaxStreamWindow, d.MaxStreamWindow)
	setDefault(&c.InitialConnWindow, d.InitialConnWindow)
	setDefault(&c.MaxConnWindow, d.MaxConnWindow)
	setDefault(&c.MaxIncomingStreams, d.MaxIncomingStreams)
	setDefault(&c.ShutdownGrace, d.ShutdownGrace)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate reports every problem of a defaulted Config.
func (c Config) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HandshakeTimeout", c.HandshakeTimeout}, {"IdleTimeout", c.IdleTimeout},
		{"KeepAlivePeriod", c.KeepAlivePeriod}, {"ShutdownGrace", c.ShutdownGrace},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", d.name, d.v))
		}
	}
	if c.MaxStreamWindow < c.InitialStreamWindow {
		errs = append(errs, fmt.Errorf("MaxStreamWindow: %d is below InitialStreamWindow %d", c.MaxStreamWindow, c.InitialStreamWindow))
	}
	if c.MaxConnWindow < c.InitialConnWindow {
		errs = append(errs, fmt.Errorf("MaxConnWindow: %d is below InitialConnWindow %d", c.MaxConnWindow, c.InitialConnWindow))
	}
	if c.MaxIncomingStreams < 0 {
		errs = append(errs, fmt.Errorf("MaxIncomingStreams: %d is negative", c.MaxIncomingStreams))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("quic: config: %w", err)
	}
	return nil
}

// quicConfig translates a defaulted Config for quic-go.
func (c Config) quicConfig() *quicgo.Config {
	return &quicgo.Config{
		HandshakeIdleTimeout:           c.HandshakeTimeout,
		MaxIdleTimeout:                 c.IdleTimeout,
		KeepAlivePeriod:                c.KeepAlivePeriod,
		InitialStreamReceiveWindow:     c.InitialStreamWindow,
		MaxStreamReceiveWindow:         c.MaxStreamWindow,
		InitialConnectionReceiveWindow: c.InitialConnWindow,
		MaxConnectionReceiveWindow:     c.MaxConnWindow,
		MaxIncomingStreams:             c.MaxIncomingStreams,
	}
}
