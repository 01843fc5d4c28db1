// Package netsim injects packet-level faults into a net.PacketConn, for
// tests of Eddy's QUIC transport and of the clusters built on it.
//
// Wrap a real (or any) socket, hand the wrapper to the code under test, and
// change the conditions while it runs:
//
//	c := netsim.Wrap(udp)
//	c.SetDropAll(true)  // a blackout: nothing goes out, nothing comes in
//	c.SetLoss(0.01)     // 1% random loss, each direction
//	c.SetDelay(20 * time.Millisecond) // one-way delay on outgoing packets
//
// A wrapper hides the socket's batching, GSO and ECN from quic-go, so it
// suits tests of behaviour, not of throughput.
package netsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Stats counts packets through a Conn.
type Stats struct {
	// Sent and Received count packets that went through.
	Sent, Received uint64
	// DroppedOut and DroppedIn count packets dropped on write and on read.
	DroppedOut, DroppedIn uint64
}

// Conn is a net.PacketConn with injectable faults. It is safe for
// concurrent use.
type Conn struct {
	pc   net.PacketConn
	wake chan struct{} // a packet was queued for delayed sending
	done chan struct{} // closed by Close

	mu      sync.Mutex
	dropAll bool
	loss    float64
	delay   time.Duration
	rng     *rand.Rand
	stats   Stats
	queue   []delayed
	sending bool // the delayed-sending goroutine runs
	closed  bool
}

type delayed struct {
	due  time.Time
	b    []byte
	addr net.Addr
}

var _ net.PacketConn = (*Conn)(nil)

// Wrap returns a Conn that passes everything through until told otherwise.
// The Conn owns pc: Close closes it.
func Wrap(pc net.PacketConn) *Conn {
	return &Conn{
		pc:   pc,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
		rng:  rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

// SetDropAll drops every packet in both directions while on: writes are
// swallowed (and reported as sent), reads discard what arrives.
func (c *Conn) SetDropAll(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropAll = on
}

// SetLoss drops each packet, in each direction, with probability p.
func (c *Conn) SetLoss(p float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loss = min(max(p, 0), 1)
}

// SetSeed makes the random loss repeatable.
func (c *Conn) SetSeed(seed uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rng = rand.New(rand.NewPCG(seed, seed))
}

// SetDelay delays every packet written from now on by d, keeping their
// order. For a round-trip delay, delay both ends or double d.
func (c *Conn) SetDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = max(d, 0)
}

// Stats returns the packet counts so far.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// dropLocked decides the fate of one packet.
func (c *Conn) dropLocked() bool {
	return c.dropAll || (c.loss > 0 && c.rng.Float64() < c.loss)
}

// ReadFrom reads the next packet that is not dropped.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.pc.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		c.mu.Lock()
		drop := c.dropLocked()
		if drop {
			c.stats.DroppedIn++
		} else {
			c.stats.Received++
		}
		c.mu.Unlock()
		if !drop {
			return n, addr, nil
		}
	}
}

// WriteTo sends p to addr, or drops or delays it.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if c.dropLocked() {
		c.stats.DroppedOut++
		c.mu.Unlock()
		return len(p), nil
	}
	c.stats.Sent++
	if c.delay == 0 && len(c.queue) == 0 {
		c.mu.Unlock()
		return c.pc.WriteTo(p, addr)
	}
	// Queue even without delay while older packets wait, to keep order.
	c.queue = append(c.queue, delayed{due: time.Now().Add(c.delay), b: append([]byte(nil), p...), addr: addr})
	if !c.sending {
		c.sending = true
		go c.sendDelayed()
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// sendDelayed writes queued packets when they fall due.
func (c *Conn) sendDelayed() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.mu.Unlock()
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		next := c.queue[0]
		wait := time.Until(next.due)
		if wait <= 0 {
			c.queue[0] = delayed{}
			c.queue = c.queue[1:]
			c.mu.Unlock()
			// A failed delayed write is a lost packet, as on a real path.
			c.pc.WriteTo(next.b, next.addr)
			continue
		}
		c.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-c.wake:
		case <-c.done:
			return
		}
	}
}

// Close closes the wrapped socket; delayed packets not yet sent are lost.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.queue = nil
	c.mu.Unlock()
	close(c.done)
	if err := c.pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("netsim: close %s: %w", c.pc.LocalAddr(), err)
	}
	return nil
}

// LocalAddr is the wrapped socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetReadBuffer sets the wrapped socket's receive buffer size, when it has
// one.
func (c *Conn) SetReadBuffer(bytes int) error {
	b, ok := c.pc.(interface{ SetReadBuffer(int) error })
	if !ok {
		return fmt.Errorf("netsim: %T has no receive buffer to size", c.pc)
	}
	return b.SetReadBuffer(bytes)
}

// SetWriteBuffer sets the wrapped socket's send buffer size, when it has
// one.
func (c *Conn) SetWriteBuffer(bytes int) error {
	b, ok := c.pc.(interface{ SetWriteBuffer(int) error })
	if !ok {
		return fmt.Errorf("netsim: %T has no send buffer to size", c.pc)
	}
	return b.SetWriteBuffer(bytes)
}

// SetDeadline sets the wrapped socket's deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.pc.SetDeadline(t) }

// SetReadDeadline sets the wrapped socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline sets the wrapped socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }
