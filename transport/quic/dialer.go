package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// ErrDialerClosed is returned by DialContext after Close.
var ErrDialerClosed = errors.New("quic: dialer closed")

// Dialer opens streams to QUIC servers: one connection per address, one
// new bidirectional stream per DialContext. All connections share one local
// UDP socket. A connection that died (closed by the server, idle timeout,
// stateless reset) is replaced by a new dial on the next DialContext; one
// that had no open stream for IdleTimeout is closed. The zero value is not
// usable; use NewDialer.
type Dialer struct {
	cfg   Config
	qconf *quicgo.Config
	tls   *tls.Config
	err   error // a configuration problem, reported by DialContext
	ctx   context.Context
	stop  context.CancelFunc

	mu     sync.Mutex
	pc     net.PacketConn
	tr     *quicgo.Transport
	peers  map[string]*peer
	closed bool
}

// peer is the connection to one address.
type peer struct {
	addr  string
	ready chan struct{} // closed when the dial has finished
	conn  *quicgo.Conn  // set before ready is closed, on success
	err   error         // set before ready is closed, on failure

	// guarded by Dialer.mu
	streams int
	idle    *time.Timer
}

// dead reports whether p can no longer open streams.
func (p *peer) dead() bool {
	select {
	case <-p.ready:
		return p.err != nil || p.conn.Context().Err() != nil
	default:
		return false // still dialling
	}
}

// NewDialer returns a Dialer that sends from a UDP socket of its own,
// opened on first use. tlsConf says whom to trust (nil: the system roots);
// its NextProtos default to [ALPNKafka] and its ServerName to the dialled
// host. Configuration errors are reported by DialContext.
func NewDialer(tlsConf *tls.Config, cfg Config) *Dialer {
	return NewDialerOn(nil, tlsConf, cfg)
}

// NewDialerOn is NewDialer sending from pc, which the Dialer owns from now
// on (Close closes it). Tests pass a wrapped socket here to inject faults.
func NewDialerOn(pc net.PacketConn, tlsConf *tls.Config, cfg Config) *Dialer {
	cfg = cfg.withDefaults()
	conf := &tls.Config{}
	if tlsConf != nil {
		conf = tlsConf.Clone()
	}
	conf.MinVersion = tls.VersionTLS13
	if len(conf.NextProtos) == 0 {
		conf.NextProtos = []string{ALPNKafka}
	}
	if conf.ClientSessionCache == nil {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	qconf := cfg.quicConfig()
	// Clients open streams; the servers they dial never do.
	qconf.MaxIncomingStreams = -1
	qconf.MaxIncomingUniStreams = -1
	qconf.TokenStore = quicgo.NewLRUTokenStore(64, 4)
	ctx, stop := context.WithCancel(context.Background())
	return &Dialer{
		cfg:   cfg,
		qconf: qconf,
		tls:   conf,
		err:   cfg.validate(),
		ctx:   ctx,
		stop:  stop,
		pc:    pc,
		peers: make(map[string]*peer),
	}
}

// DialContext opens a new stream to addr ("host:port") and returns it as a
// net.Conn whose Close closes the stream, not the connection. network is
// ignored: the stream always travels over QUIC. Concurrent calls for an
// address without a connection share one dial. The signature matches
// net.Dialer.DialContext, for kgo.Dialer.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.err != nil {
		return nil, d.err
	}
	for attempt := 0; ; attempt++ {
		p, err := d.peer(ctx, addr)
		if err != nil {
			return nil, err
		}
		str, err := p.conn.OpenStreamSync(ctx)
		if err == nil {
			d.acquire(p)
			return newStreamConn(p.conn, str, func() { d.release(p) }), nil
		}
		// The connection may have died since it was looked up: one
		// redial.
		if attempt == 0 && ctx.Err() == nil && p.conn.Context().Err() != nil {
			continue
		}
		return nil, fmt.Errorf("quic: open stream to %s: %w", addr, err)
	}
}

// peer returns the live connection to addr, dialling when there is none.
func (d *Dialer) peer(ctx context.Context, addr string) (*peer, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrDialerClosed
	}
	p := d.peers[addr]
	if p == nil || p.dead() {
		if p != nil {
			d.forgetLocked(p)
		}
		p = &peer{addr: addr, ready: make(chan struct{})}
		d.peers[addr] = p
		go d.dial(p)
	}
	d.mu.Unlock()
	select {
	case <-p.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("quic: dial %s: %w", addr, ctx.Err())
	}
	if p.err != nil {
		return nil, p.err
	}
	return p, nil
}

// dial connects p. It runs on its own, not under any one caller's context,
// so that callers giving up do not fail the others; Close aborts it.
func (d *Dialer) dial(p *peer) {
	conn, err := d.connect(p.addr)
	if err != nil {
		p.err = fmt.Errorf("quic: dial %s: %w", p.addr, err)
		close(p.ready)
		return
	}
	p.conn = conn
	close(p.ready)
	d.mu.Lock()
	closed := d.closed
	if !closed && p.streams == 0 {
		d.armIdleLocked(p)
	}
	d.mu.Unlock()
	if closed {
		conn.CloseWithError(CodeNoError, "client closed")
	}
}

func (d *Dialer) connect(addr string) (*quicgo.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ctx := d.ctx
	raddr, err := resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	tr, err := d.transport()
	if err != nil {
		return nil, err
	}
	conf := d.tls.Clone()
	if conf.ServerName == "" {
		conf.ServerName = host
	}
	return tr.Dial(ctx, raddr, conf, d.qconf)
}

func resolve(ctx context.Context, host, port string) (*net.UDPAddr, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		n, lerr := net.DefaultResolver.LookupPort(ctx, "udp", port)
		if lerr != nil {
			return nil, fmt.Errorf("port %q: %w", port, lerr)
		}
		p = uint64(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(p))), nil
}

// transport returns the shared quic.Transport, opening the socket on first
// use.
func (d *Dialer) transport() (*quicgo.Transport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrDialerClosed
	}
	if d.tr == nil {
		if d.pc == nil {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{})
			if err != nil {
				return nil, fmt.Errorf("open UDP socket: %w", err)
			}
			d.pc = pc
		}
		d.tr = &quicgo.Transport{Conn: d.pc}
	}
	return d.tr, nil
}

func (d *Dialer) acquire(p *peer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.streams++
	if p.idle != nil {
		p.idle.Stop()
		p.idle = nil
	}
}

func (d *Dialer) release(p *peer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.streams--
	if p.streams == 0 && !d.closed {
		d.armIdleLocked(p)
	}
}

// armIdleLocked closes p after IdleTimeout without streams.
func (d *Dialer) armIdleLocked(p *peer) {
	if p.idle != nil {
		p.idle.Stop()
	}
	p.idle = time.AfterFunc(d.cfg.IdleTimeout, func() {
		d.mu.Lock()
		if p.streams > 0 || d.peers[p.addr] != p {
			d.mu.Unlock()
			return
		}
		d.forgetLocked(p)
		d.mu.Unlock()
		p.conn.CloseWithError(CodeNoError, "idle")
	})
}

func (d *Dialer) forgetLocked(p *peer) {
	if d.peers[p.addr] == p {
		delete(d.peers, p.addr)
	}
	if p.idle != nil {
		p.idle.Stop()
		p.idle = nil
	}
}

// Close closes every connection and the socket. Streams still open fail.
func (d *Dialer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	peers := make([]*peer, 0, len(d.peers))
	for _, p := range d.peers {
		d.forgetLocked(p)
		peers = append(peers, p)
	}
	tr, pc := d.tr, d.pc
	d.mu.Unlock()

	d.stop() // aborts dials in progress
	for _, p := range peers {
		<-p.ready
		if p.conn != nil {
			p.conn.CloseWithError(CodeNoError, "client closed")
		}
	}
	var err error
	if tr != nil {
		if cerr := tr.Close(); cerr != nil {
			err = fmt.Errorf("quic: close dialer transport: %w", cerr)
		}
	}
	if pc != nil {
		if cerr := pc.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("quic: close dialer socket: %w", cerr))
		}
	}
	return err
}
