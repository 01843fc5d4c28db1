package quic

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// StreamConn is a bidirectional QUIC stream used as a net.Conn.
//
// Read returns io.EOF once the peer has finished its side. Close sends FIN
// after everything written (as TCP does), and stops the receive direction
// so that the stream no longer counts against the peer's stream limit; if
// a Write is blocked at that moment, the send direction is reset instead.
// Deadlines apply to the stream only. All methods are safe for concurrent
// use.
type StreamConn struct {
	str     *quicgo.Stream
	conn    *quicgo.Conn
	onClose func()

	wmu sync.Mutex // serialises Write

	mu          sync.Mutex
	closed      bool
	writeClosed bool // CloseWrite was called
	writing     bool
	interrupted bool // reads stopped by a server shutdown
}

var _ net.Conn = (*StreamConn)(nil)

func newStreamConn(c *quicgo.Conn, str *quicgo.Stream, onClose func()) *StreamConn {
	return &StreamConn{str: str, conn: c, onClose: onClose}
}

// Stream returns the underlying QUIC stream, for priorities and the like.
func (c *StreamConn) Stream() *quicgo.Stream { return c.str }

// Conn returns the QUIC connection carrying the stream, for its TLS state
// (peer certificates, ALPN) and statistics.
func (c *StreamConn) Conn() *quicgo.Conn { return c.conn }

// Read reads from the stream.
func (c *StreamConn) Read(p []byte) (int, error) {
	n, err := c.str.Read(p)
	if err != nil {
		c.mu.Lock()
		closed, interrupted := c.closed, c.interrupted
		c.mu.Unlock()
		switch {
		case closed:
			err = net.ErrClosed
		case interrupted && errors.Is(err, os.ErrDeadlineExceeded):
			err = io.EOF
		}
	}
	return n, err
}

// Write writes to the stream.
func (c *StreamConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed || c.writeClosed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.writing = true
	c.mu.Unlock()

	n, err := c.str.Write(p)

	c.mu.Lock()
	c.writing = false
	if err != nil && c.closed {
		err = net.ErrClosed
	}
	c.mu.Unlock()
	return n, err
}

// CloseWrite finishes the send direction (FIN after everything written),
// like (*net.TCPConn).CloseWrite; reading goes on.
func (c *StreamConn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.writeClosed {
		return net.ErrClosed
	}
	c.writeClosed = true
	return c.str.Close()
}

// Close finishes both directions of the stream. The connection stays open.
func (c *StreamConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	busy, finished := c.writing, c.writeClosed
	c.mu.Unlock()
	switch {
	case finished:
	case busy:
		// quic-go forbids Close concurrently with Write; a conn closed
		// mid-write is abandoned, as a TCP conn would be.
		c.str.CancelWrite(CodeCancelled)
	default:
		// FIN after all written data, retransmitted until acknowledged.
		// Never followed by CancelWrite, which would abort that delivery.
		c.str.Close()
	}
	// Release the peer's stream credit even if it never sends FIN.
	c.str.CancelRead(CodeNoError)
	if c.onClose != nil {
		c.onClose()
	}
	return nil
}

// LocalAddr is the local address of the QUIC connection.
func (c *StreamConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr is the peer's address of the QUIC connection.
func (c *StreamConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *StreamConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. After a server shutdown stopped
// reading, it has no effect.
func (c *StreamConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return nil
	}
	return c.str.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline.
func (c *StreamConn) SetWriteDeadline(t time.Time) error {
	return c.str.SetWriteDeadline(t)
}

// stopReading makes pending and future Reads return io.EOF, as if the peer
// had finished. Writes continue, so responses in flight can complete.
func (c *StreamConn) stopReading() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	c.str.SetReadDeadline(time.Unix(1, 0))
}

// StreamHandler adapts fn to a ConnHandler: every bidirectional stream the
// peer opens on the connection is served by fn in its own goroutine, as a
// *StreamConn, and closed (both directions) when fn returns.
//
// ctx is canceled when the connection closes or the Server shuts down. On
// shutdown, reads on the streams return io.EOF (a blocked Read returns at
// once) while writes keep working: fn should stop taking requests and
// finish writing the responses it owes, then return. Streams the peer opens
// after shutdown began are refused with CodeRequestRejected, which a client
// may retry elsewhere. The ConnHandler returns when every fn has returned.
func StreamHandler(fn func(ctx context.Context, conn net.Conn)) ConnHandler {
	return func(ctx context.Context, c *quicgo.Conn) {
		var (
			mu     sync.Mutex
			active = make(map[*StreamConn]struct{})
			wg     sync.WaitGroup
		)
		stop := context.AfterFunc(ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			for sc := range active {
				sc.stopReading()
			}
		})
		defer stop()
		for {
			str, err := c.AcceptStream(ctx)
			if err != nil {
				break
			}
			sc := newStreamConn(c, str, nil)
			mu.Lock()
			if ctx.Err() != nil {
				mu.Unlock()
				refuse(str)
				break
			}
			active[sc] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(active, sc)
					mu.Unlock()
					sc.Close()
				}()
				fn(ctx, sc)
			})
		}
		if c.Context().Err() == nil {
			// Shutting down: refuse new streams until the Server closes
			// the connection.
			go refuseStreams(c)
		}
		wg.Wait()
	}
}

func refuseStreams(c *quicgo.Conn) {
	for {
		str, err := c.AcceptStream(c.Context())
		if err != nil {
			return
		}
		refuse(str)
	}
}

// refuse rejects a stream unprocessed; the peer may retry the request.
func refuse(str *quicgo.Stream) {
	str.CancelRead(CodeRequestRejected)
	str.CancelWrite(CodeRequestRejected)
}
