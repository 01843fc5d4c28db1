// Package kafkawire carries the Kafka protocol over a byte stream: a TCP
// connection or one QUIC stream.
//
// A frame is an int32 size followed by that many bytes. A request frame
// holds the request header (api key, api version, correlation id, nullable
// client id, and tagged fields when the request is flexible) and the body;
// a response frame holds the correlation id, an empty tagged-field section
// when the response is flexible (never for ApiVersions, whose response
// header is always v0), and the body. Bodies are decoded and encoded with
// franz-go's kmsg; this package parses only the header.
//
// ServeConn reads requests in order and hands each to a Handler on the
// reading goroutine; Produce requests are staged (prepared while later
// requests are read, committed in order, and ahead of any later request
// of another kind, so per-connection order holds); work that must wait
// (a flush, a long poll) finishes off that goroutine; responses go out
// strictly in request order, as Kafka clients require.
package kafkawire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/eddybroker/eddy/internal/bufpool"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersionsKey is the one request whose response header is always v0.
const ApiVersionsKey = 18

// Errors that end a connection.
var (
	ErrFrameTooLarge = errors.New("kafkawire: frame too large")
	ErrBadFrame      = errors.New("kafkawire: malformed frame")
	ErrUnknownKey    = errors.New("kafkawire: unknown api key")
	ErrUnsupported   = errors.New("kafkawire: unsupported api version")
)

// ReadFrame reads one size-prefixed frame, refusing a size above max before
// allocating anything for it.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	return readFrame(r, max, nil, func(n int) []byte { return make([]byte, n) })
}

// eagerFrame is the largest frame whose buffer is allocated whole before
// its bytes arrive, whatever the receive budget: a size prefix alone
// costs at most this.
const eagerFrame = 64 << 10

// DefaultReceiveBudget bounds the bytes allocated, across the process's
// connections, for frames larger than 64 KiB before their bytes arrive.
const DefaultReceiveBudget = 256 << 20

// ReceiveBudget bounds the memory the connections sharing it allocate for
// frames ahead of their bytes. Within it a frame's buffer is allocated
// whole when its size prefix is read; beyond it the buffer grows with the
// bytes that arrive, so clients that send size prefixes and then little
// or nothing (slowly, or never) cannot make the broker allocate their
// frames' declared sizes.
type ReceiveBudget struct {
	max  int64
	used atomic.Int64
}

// NewReceiveBudget returns a budget of max bytes.
func NewReceiveBudget(max int64) *ReceiveBudget { return &ReceiveBudget{max: max} }

var defaultReceiveBudget = NewReceiveBudget(DefaultReceiveBudget)

func (b *ReceiveBudget) reserve(n int) bool {
	if b.used.Add(int64(n)) <= b.max {
		return true
	}
	b.used.Add(-int64(n))
	return false
}

func (b *ReceiveBudget) release(n int) { b.used.Add(-int64(n)) }

// readFrame is ReadFrame with the frame's buffer from alloc when it is
// small or budget (nil: none) allows; otherwise the buffer grows, doubling
// from 64 KiB, as the bytes arrive (and alloc is not used).
func readFrame(r io.Reader, max int, budget *ReceiveBudget, alloc func(n int) []byte) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 0 {
		return nil, fmt.Errorf("%w: negative size %d", ErrBadFrame, n)
	}
	if int64(n) > int64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	var buf []byte
	var err error
	switch {
	case n <= eagerFrame || budget == nil:
		buf = alloc(int(n))
		_, err = io.ReadFull(r, buf)
	case budget.reserve(int(n)):
		buf = alloc(int(n))
		_, err = io.ReadFull(r, buf)
		budget.release(int(n))
	default:
		buf, err = readGrowing(r, int(n))
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// readGrowing reads n bytes into a buffer that doubles, from eagerFrame,
// as they arrive.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, eagerFrame)
	for {
		got, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+got]
		if err != nil {
			return nil, err
		}
		if len(buf) == n {
			return buf, nil
		}
		next := make([]byte, len(buf), min(2*cap(buf), n))
		copy(next, buf)
		buf = next
	}
}

// Header is a parsed request header.
type Header struct {
	Key           int16
	Version       int16
	CorrelationID int32
	ClientID      *string
}

// skipTags skips a tagged-field section, refusing a count the bytes left
// cannot hold (a field takes at least two bytes): kmsg's skipper loops
// over whatever count is declared, which a forged one makes endless.
func skipTags(r *kbin.Reader) error {
	n := r.Uvarint()
	if !r.Ok() {
		return errors.New("no field count")
	}
	if int64(n) > int64(len(r.Src)/2) {
		return fmt.Errorf("%d fields declared in %d bytes", n, len(r.Src))
	}
	for ; n > 0 && r.Ok(); n-- {
		r.Uvarint()
		r.Span(int(r.Uvarint()))
	}
	if !r.Ok() {
		return errors.New("a field runs past the frame")
	}
	return nil
}

// ParseRequest parses a request frame: the header, then the body with kmsg
// at the header's version. It returns ErrUnknownKey for a key kmsg does not
// know (the header is still returned) and an ErrBadFrame error when the
// header or body does not parse.
func ParseRequest(frame []byte) (Header, kmsg.Request, error) {
	r := kbin.Reader{Src: frame}
	h := Header{Key: r.Int16(), Version: r.Int16(), CorrelationID: r.Int32()}
	h.ClientID = r.NullableString()
	if !r.Ok() {
		return h, nil, fmt.Errorf("%w: short request header (%d bytes)", ErrBadFrame, len(frame))
	}
	req := kmsg.RequestForKey(h.Key)
	if req == nil {
		return h, nil, fmt.Errorf("%w %d", ErrUnknownKey, h.Key)
	}
	if h.Version < 0 || h.Version > req.MaxVersion() {
		return h, req, fmt.Errorf("%w: %s v%d (this codec knows v0-v%d)", ErrUnsupported, kmsg.NameForKey(h.Key), h.Version, req.MaxVersion())
	}
	req.SetVersion(h.Version)
	if req.IsFlexible() {
		if err := skipTags(&r); err != nil {
			return h, nil, fmt.Errorf("%w: bad tagged fields in the %s header: %v", ErrBadFrame, kmsg.NameForKey(h.Key), err)
		}
	}
	if err := req.ReadFrom(r.Src); err != nil {
		return h, nil, fmt.Errorf("%w: %s v%d body: %v", ErrBadFrame, kmsg.NameForKey(h.Key), h.Version, err)
	}
	return h, req, nil
}

// AppendRequest encodes a request frame (used by tests and tools).
func AppendRequest(dst []byte, corr int32, clientID *string, req kmsg.Request) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = kbin.AppendInt16(dst, req.Key())
	dst = kbin.AppendInt16(dst, req.GetVersion())
	dst = kbin.AppendInt32(dst, corr)
	dst = kbin.AppendNullableString(dst, clientID)
	if req.IsFlexible() {
		dst = append(dst, 0)
	}
	dst = req.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendResponse encodes a response frame for a request with key and
// correlation id corr. The response's version must already be set.
func AppendResponse(dst []byte, corr int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = kbin.AppendInt32(dst, corr)
	if resp.IsFlexible() && resp.Key() != ApiVersionsKey {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// ParseResponse decodes a response frame into resp (whose version must be
// set) and returns the correlation id (used by tests and tools).
func ParseResponse(frame []byte, resp kmsg.Response) (int32, error) {
	r := kbin.Reader{Src: frame}
	corr := r.Int32()
	if resp.IsFlexible() && resp.Key() != ApiVersionsKey {
		kmsg.SkipTags(&r)
	}
	if !r.Ok() {
		return corr, fmt.Errorf("%w: short response header", ErrBadFrame)
	}
	return corr, resp.ReadFrom(r.Src)
}

// minPooledFrame is the smallest frame read into a recycled buffer. A
// producer held to a steady rate sends requests of tens of kilobytes,
// thousands a second; allocating each made the collector run several
// times a second and doubled what a node allocated per byte produced.
// Below it, a plain allocation costs about what the pool does.
const minPooledFrame = 16 << 10

// frames recycles the buffers of large Produce requests (see bufpool).
var frames = bufpool.New(minPooledFrame)
