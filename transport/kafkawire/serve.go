package kafkawire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConnInfo describes the connection a request arrived on.
type ConnInfo struct {
	Listener string // the listener's name: "kafka" (TCP) or "quic"
	Remote   net.Addr
	Local    net.Addr
}

// Request is one decoded request.
type Request struct {
	Header
	Body kmsg.Request
	Conn *ConnInfo
	// Ctx ends when the connection does; long polls watch it.
	Ctx context.Context
	// UnsupportedVersion marks an ApiVersions request at a version the
	// handler does not serve: Body is then a v0 request, and the response
	// goes out at v0, as the protocol asks.
	UnsupportedVersion bool
}

// Result is a handler's answer to one request.
type Result struct {
	// Response is ready now.
	Response kmsg.Response
	// Later, when set, computes the response off the reading goroutine
	// (waiting for a flush or a long poll); it keeps its place in order.
	Later func() kmsg.Response
	// Staged, when set, serves the request in two steps off the reading
	// goroutine (Produce only).
	Staged *Staged
}

// Staged is a Produce request served off the reading goroutine in two
// steps, so that the connection reads and prepares the requests behind
// it meanwhile. Prepare (checking batches) runs at once, concurrently
// with later requests. Commit (appending) runs after Prepare, after the
// Commit of every earlier Produce request of the connection, and before
// any later request other than a Produce is served: the connection's
// requests take effect in their order, as if served one at a time.
// Commit returns the request's Result: a Response, a Later, or
// NoResponse.
type Staged struct {
	Prepare func()
	Commit  func() Result
}

// NoResponse is the result of a request that gets no answer (acks=0).
var NoResponse = Result{}

// Handler serves requests. Serve is called on the connection's reading
// goroutine, one request at a time in arrival order. A Produce request's
// Serve may run before earlier Produce requests have taken effect, so it
// changes nothing itself: it returns a Staged result, whose Commit does.
//
// The bytes of a Produce request (its record batches) are valid only
// until its response has been written, or until its Commit returns when
// no response is owed: their buffer is then reused for a later request. A
// handler copies what it keeps beyond that (the log's write does). Other
// requests' bytes are never reused.
type Handler interface {
	// Supported reports whether key is served at version.
	Supported(key, version int16) bool
	Serve(req *Request) Result
}

// Config bounds a connection.
type Config struct {
	MaxFrameSize int // largest request frame; default 100 MiB
	MaxInflight  int // requests read ahead of their responses; default 16
	// MaxConns and MaxConnsPerIP bound a Server's connections (QUIC
	// streams count each), in all and from one remote address; a
	// connection beyond either is closed at once. 0: no bound.
	MaxConns      int
	MaxConnsPerIP int
	// Receive bounds, with the other connections sharing it, the memory
	// allocated for large frames before their bytes arrive; nil: a
	// budget of DefaultReceiveBudget shared by the whole process.
	Receive  *ReceiveBudget
	Logger   *slog.Logger // nil discards
	Observer Observer     // nil: nobody is told
}

// Observer hears of connections and of every request answered (metrics).
type Observer interface {
	ConnOpened(listener string)
	ConnClosed(listener string)
	// ConnRefused reports a connection closed at once for a limit
	// ("max_connections" or "max_connections_per_ip").
	ConnRefused(listener, limit string)
	// Request reports one request: its API key, frame sizes and the time
	// from reading the request to writing its response.
	Request(listener string, key int16, reqBytes, respBytes int, latency time.Duration)
}

type item struct {
	hdr     Header
	start   time.Time
	size    int // request frame bytes
	resp    kmsg.Response
	frame   []byte        // a pooled request buffer to recycle once answered
	done    chan struct{} // closed when a Later or Staged response is ready; nil otherwise
	respond bool          // false when a Staged request turned out to owe no response
	v0      bool
}

// stages orders a connection's Staged requests: committed is closed once
// the last one dispatched has committed, and running counts those whose
// goroutine has not finished.
type stages struct {
	committed chan struct{}
	running   sync.WaitGroup
}

// ServeConn serves one connection until the peer closes it, a protocol
// error, or ctx ends. When ctx ends it stops reading, finishes and writes
// the responses of requests already read, and returns nil. It returns an
// error for a protocol violation (the caller closes the connection). It
// does not close conn.
func ServeConn(ctx context.Context, conn net.Conn, info ConnInfo, h Handler, cfg Config) error {
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = 100 << 20
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 16
	}
	if cfg.Receive == nil {
		cfg.Receive = defaultReceiveBudget
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	obs := cfg.Observer
	if obs != nil {
		obs.ConnOpened(info.Listener)
		defer obs.ConnClosed(info.Listener)
	}
	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	items := make(chan *item, cfg.MaxInflight)
	var wg sync.WaitGroup
	wg.Add(1)
	var writeErr error
	go func() {
		defer wg.Done()
		writeErr = writeLoop(conn, items, info.Listener, obs)
		if writeErr != nil {
			cancel()
			conn.SetReadDeadline(time.Now()) // unblock the reader
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	st := &stages{committed: make(chan struct{})}
	close(st.committed)
	defer st.running.Wait() // no append outlives the connection's serving
	br := bufio.NewReaderSize(conn, 64<<10)
	var err error
	for {
		var frame []byte
		var pooled []byte
		frame, err = readFrame(br, cfg.MaxFrameSize, cfg.Receive, func(n int) []byte {
			if n < minPooledFrame {
				return make([]byte, n)
			}
			pooled = frames.Get(n)
			return pooled
		})
		if err != nil {
			if pooled != nil {
				frames.Put(pooled)
			}
			break
		}
		start := time.Now()
		produce := len(frame) >= 2 && int16(binary.BigEndian.Uint16(frame)) == kmsg.Produce.Int16()
		if !produce {
			<-st.committed // earlier produces take effect first
		}
		var it *item
		if it, err = dispatch(frame, &info, h, connCtx, st); err != nil {
			break
		}
		// Only a Produce request's buffer comes back (see Handler).
		if pooled != nil && produce {
			if it == nil {
				frames.Put(pooled)
			} else {
				it.frame = pooled
			}
		}
		if it != nil {
			it.start, it.size = start, len(frame)
			items <- it
		}
	}
	// No more requests: long polls answer now with what they have; work
	// that must finish (a produce waiting for its flush) still does.
	cancel()
	close(items)
	wg.Wait()
	switch {
	case writeErr != nil:
		return fmt.Errorf("write response to %v: %w", info.Remote, writeErr)
	case ctx.Err() != nil, errors.Is(err, io.EOF):
		return nil
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrBadFrame), errors.Is(err, ErrUnknownKey), errors.Is(err, ErrUnsupported):
		log.Warn("closing connection after a bad request", "remote", info.Remote, "listener", info.Listener, "err", err)
		return fmt.Errorf("connection from %v: %w", info.Remote, err)
	case isClosed(err):
		return nil
	default:
		return fmt.Errorf("read request from %v: %w", info.Remote, err)
	}
}

func isClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || (errors.As(err, &ne) && ne.Timeout())
}

// dispatch parses a frame and runs the handler; a nil item means no
// response is owed.
func dispatch(frame []byte, info *ConnInfo, h Handler, ctx context.Context, st *stages) (*item, error) {
	hdr, body, err := ParseRequest(frame)
	if hdr.Key == ApiVersionsKey && (errors.Is(err, ErrUnsupported) || (err == nil && !h.Supported(hdr.Key, hdr.Version))) {
		// A client newer than us: answer at v0 with our versions.
		body = &kmsg.ApiVersionsRequest{Version: 0}
		req := &Request{Header: hdr, Body: body, Conn: info, Ctx: ctx, UnsupportedVersion: true}
		res := h.Serve(req)
		return &item{hdr: hdr, resp: res.Response, respond: true, v0: true}, nil
	}
	if err != nil {
		return nil, err
	}
	if !h.Supported(hdr.Key, hdr.Version) {
		return nil, fmt.Errorf("%w: %s v%d is not served", ErrUnsupported, kmsg.NameForKey(hdr.Key), hdr.Version)
	}
	req := &Request{Header: hdr, Body: body, Conn: info, Ctx: ctx}
	res := h.Serve(req)
	switch {
	case res.Staged != nil:
		it := &item{hdr: hdr, respond: true, done: make(chan struct{})}
		prev, committed := st.committed, make(chan struct{})
		st.committed = committed
		st.running.Add(1)
		go func() {
			defer st.running.Done()
			res.Staged.Prepare()
			<-prev
			r := res.Staged.Commit()
			close(committed)
			switch {
			case r.Later != nil:
				it.resp = r.Later()
			case r.Response != nil:
				it.resp = r.Response
			default:
				it.respond = false
			}
			close(it.done)
		}()
		return it, nil
	case res.Later != nil:
		it := &item{hdr: hdr, respond: true, done: make(chan struct{})}
		go func() {
			it.resp = res.Later()
			close(it.done)
		}()
		return it, nil
	case res.Response != nil:
		return &item{hdr: hdr, resp: res.Response, respond: true}, nil
	}
	return nil, nil
}

// writeLoop writes responses in request order, batching writes while more
// responses are ready.
func writeLoop(conn net.Conn, items <-chan *item, listener string, obs Observer) error {
	bw := bufio.NewWriterSize(conn, 64<<10)
	var buf []byte
	var failed error
	for it := range items {
		if failed != nil {
			continue // drain so the reader never blocks
		}
		if it.done != nil {
			select {
			case <-it.done:
			default:
				// Send what is ready before waiting on a slow response.
				if err := bw.Flush(); err != nil {
					failed = err
					continue
				}
				<-it.done
			}
		}
		if !it.respond {
			if it.frame != nil {
				frames.Put(it.frame)
			}
			// What was written before it must not wait for a later request.
			if len(items) == 0 {
				if err := bw.Flush(); err != nil {
					failed = err
				}
			}
			continue
		}
		resp := it.resp
		if resp == nil {
			failed = fmt.Errorf("no response for %s", kmsg.NameForKey(it.hdr.Key))
			continue
		}
		if it.v0 {
			resp.SetVersion(0)
		} else {
			resp.SetVersion(it.hdr.Version)
		}
		buf = AppendResponse(buf[:0], it.hdr.CorrelationID, resp)
		if _, err := bw.Write(buf); err != nil {
			failed = err
			continue
		}
		if it.frame != nil {
			frames.Put(it.frame)
		}
		if obs != nil {
			obs.Request(listener, it.hdr.Key, it.size, len(buf), time.Since(it.start))
		}
		if cap(buf) > 1<<20 {
			buf = nil // do not pin a large fetch response
		}
		if len(items) == 0 {
			if err := bw.Flush(); err != nil {
				failed = err
			}
		}
	}
	if failed == nil {
		failed = bw.Flush()
	}
	return failed
}
