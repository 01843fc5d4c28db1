package kafkawire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testHandler answers ApiVersions (v0-v4) and Metadata (v0-v12). A Metadata
// request naming topic "slow" is answered later, when release is closed;
// "none" gets no response at all.
type testHandler struct {
	release chan struct{}
	served  chan string
}

func (h *testHandler) Supported(key, version int16) bool {
	switch key {
	case 18:
		return version <= 4
	case 3:
		return version <= 12
	}
	return false
}

func (h *testHandler) Serve(req *Request) Result {
	switch body := req.Body.(type) {
	case *kmsg.ApiVersionsRequest:
		resp := body.ResponseKind().(*kmsg.ApiVersionsResponse)
		if req.UnsupportedVersion {
			resp.ErrorCode = kerr.UnsupportedVersion.Code
		}
		resp.ApiKeys = append(resp.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: 18, MaxVersion: 4}, kmsg.ApiVersionsResponseApiKey{ApiKey: 3, MaxVersion: 12})
		return Result{Response: resp}
	case *kmsg.MetadataRequest:
		name := ""
		if len(body.Topics) > 0 && body.Topics[0].Topic != nil {
			name = *body.Topics[0].Topic
		}
		if h.served != nil {
			h.served <- name
		}
		resp := body.ResponseKind().(*kmsg.MetadataResponse)
		resp.Topics = []kmsg.MetadataResponseTopic{{Topic: &name}}
		switch name {
		case "slow":
			return Result{Later: func() kmsg.Response { <-h.release; return resp }}
		case "none":
			return NoResponse
		}
		return Result{Response: resp}
	}
	return NoResponse
}

func metadataReq(topic string) *kmsg.MetadataRequest {
	r := kmsg.NewPtrMetadataRequest()
	r.Version = 9 // flexible
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = &topic
	r.Topics = append(r.Topics, t)
	return r
}

func serve(t *testing.T, h Handler, cfg Config) (client net.Conn, ctx context.Context, cancel func(), done chan error) {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() {
		done <- ServeConn(ctx, b, ConnInfo{Listener: "test", Remote: b.RemoteAddr()}, h, cfg)
		b.Close()
	}()
	t.Cleanup(func() { cancel(); a.Close() })
	return a, ctx, cancel, done
}

func readResp(t *testing.T, r *bufio.Reader, resp kmsg.Response) int32 {
	t.Helper()
	frame, err := ReadFrame(r, 1<<20)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	corr, err := ParseResponse(frame, resp)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	return corr
}

func TestResponsesInRequestOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &testHandler{release: make(chan struct{})}
		c, _, _, _ := serve(t, h, Config{})
		var out []byte
		for i, topic := range []string{"slow", "none", "fast"} {
			out = AppendRequest(out, int32(i+1), nil, metadataReq(topic))
		}
		go c.Write(out)
		r := bufio.NewReader(c)
		got := make(chan int32, 2)
		go func() {
			for i := 0; i < 2; i++ {
				resp := &kmsg.MetadataResponse{Version: 9}
				got <- readResp(t, r, resp)
			}
		}()
		synctest.Wait() // everything is blocked: "fast" is ready but waits behind "slow"
		select {
		case corr := <-got:
			t.Fatalf("response %d overtook the slow request", corr)
		default:
		}
		close(h.release)
		if a, b := <-got, <-got; a != 1 || b != 3 {
			t.Fatalf("responses in order %d, %d; want 1, 3 (2 gets none)", a, b)
		}
	})
}

func TestOversizedFrameRefusedBeforeAllocation(t *testing.T) {
	c, _, _, done := serve(t, &testHandler{}, Config{MaxFrameSize: 1 << 20})
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<30) // 1 GiB announced, never sent
	go c.Write(hdr[:])
	select {
	case err := <-done:
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server waited for a 1 GiB body instead of refusing the size")
	}
}

func TestUnknownKeyAndUnservedVersionCloseTheConnection(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unknown key": func() []byte {
			b := AppendRequest(nil, 1, nil, metadataReq("x"))
			binary.BigEndian.PutUint16(b[4:], 999)
			return b
		}(),
		"unserved version": AppendRequest(nil, 1, nil, &kmsg.MetadataRequest{Version: 13}),
		"unserved key":     AppendRequest(nil, 1, nil, kmsg.NewPtrProduceRequest()),
		"garbage body":     append([]byte{0, 0, 0, 9, 0, 3, 0, 9, 0, 0, 0, 1, 0xff}, make([]byte, 0)...)[:13],
	} {
		t.Run(name, func(t *testing.T) {
			c, _, _, done := serve(t, &testHandler{}, Config{})
			go c.Write(frame)
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("connection ended without an error")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the connection stayed open")
			}
		})
	}
}

func TestApiVersionsTooNewGetsV0(t *testing.T) {
	c, _, _, _ := serve(t, &testHandler{}, Config{})
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 4 // the handler serves 0-4; pretend the client asks for 4 but we patch it to 9
	frame := AppendRequest(nil, 7, nil, req)
	binary.BigEndian.PutUint16(frame[6:], 9)
	go c.Write(frame)
	resp := &kmsg.ApiVersionsResponse{Version: 0}
	if corr := readResp(t, bufio.NewReader(c), resp); corr != 7 {
		t.Fatalf("correlation id %d", corr)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != 2 {
		t.Fatalf("got error %d with %d keys; want UNSUPPORTED_VERSION and our versions", resp.ErrorCode, len(resp.ApiKeys))
	}
}

func TestShutdownFinishesInflightResponses(t *testing.T) {
	h := &testHandler{release: make(chan struct{}), served: make(chan string, 2)}
	c, _, cancel, done := serve(t, h, Config{})
	go c.Write(AppendRequest(nil, 1, nil, metadataReq("slow")))
	<-h.served
	cancel() // shutdown while the response is pending
	go func() { close(h.release) }()
	resp := &kmsg.MetadataResponse{Version: 9}
	if corr := readResp(t, bufio.NewReader(c), resp); corr != 1 || *resp.Topics[0].Topic != "slow" {
		t.Fatalf("in-flight response lost: corr %d", corr)
	}
	if err := <-done; err != nil {
		t.Fatalf("graceful shutdown returned %v", err)
	}
	// Nothing more is read after shutdown.
	c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(AppendRequest(nil, 2, nil, metadataReq("x"))); err == nil {
		t.Fatal("the server kept reading after shutdown")
	}
}

func TestPeerCloseIsNotAnError(t *testing.T) {
	c, _, _, done := serve(t, &testHandler{}, Config{})
	go c.Write(AppendRequest(nil, 1, nil, metadataReq("x")))
	readResp(t, bufio.NewReader(c), &kmsg.MetadataResponse{Version: 9})
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("peer close: %v", err)
	}
}

// memConn is a net.Conn reading from fixed input and discarding writes.
type memConn struct {
	r io.Reader
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServeConn feeds arbitrary bytes to a connection: the server must not
// panic, and must end (with an error for anything malformed).
func FuzzServeConn(f *testing.F) {
	f.Add(AppendRequest(nil, 1, nil, metadataReq("x")))
	f.Add(AppendRequest(nil, 2, nil, &kmsg.ApiVersionsRequest{Version: 3, ClientSoftwareName: "x", ClientSoftwareVersion: "1"}))
	f.Add(append(AppendRequest(nil, 1, nil, metadataReq("slow")), AppendRequest(nil, 2, nil, metadataReq("none"))...))
	f.Add([]byte{0, 0, 0, 4, 0, 18, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0})    // an empty frame
	f.Add([]byte{0, 0, 0, 1, 0}) // shorter than an api key
	f.Fuzz(func(t *testing.T, in []byte) {
		h := &testHandler{release: closedCh}
		err := ServeConn(context.Background(), &memConn{r: bytes.NewReader(in)}, ConnInfo{}, h, Config{MaxFrameSize: 1 << 16})
		if err == nil && len(in) > 0 && !wellFormed(in) {
			t.Fatalf("malformed input accepted without an error")
		}
	})
}

// wellFormed reports whether in is a sequence of frames that parse as
// requests the test handler serves, possibly cut short at the end (a peer
// that went away mid-frame is a closed connection, not a protocol error).
func wellFormed(in []byte) bool {
	h := &testHandler{}
	for len(in) > 0 {
		frame, err := ReadFrame(bytes.NewReader(in), 1<<16)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		in = in[4+len(frame):]
		hdr, _, err := ParseRequest(frame)
		if hdr.Key == ApiVersionsKey && (err == nil || errors.Is(err, ErrUnsupported)) {
			continue
		}
		if err != nil || !h.Supported(hdr.Key, hdr.Version) {
			return false
		}
	}
	return true
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// retainHandler answers Produce (acks=1) only when release is closed, and
// then checks that each request's record bytes still hold what arrived.
type retainHandler struct {
	release chan struct{}
	served  chan struct{}
	changed chan int32 // correlation IDs whose bytes changed under the handler
}

func (h *retainHandler) Supported(key, version int16) bool {
	return key == 0 && version >= 3 && version <= 9
}

func (h *retainHandler) Serve(req *Request) Result {
	body := req.Body.(*kmsg.ProduceRequest)
	recs := body.Topics[0].Partitions[0].Records
	want := bytes.Clone(recs)
	h.served <- struct{}{}
	resp := body.ResponseKind().(*kmsg.ProduceResponse)
	return Result{Later: func() kmsg.Response {
		<-h.release
		if !bytes.Equal(recs, want) {
			h.changed <- req.Header.CorrelationID
		}
		return resp
	}}
}

func produceReq(fill byte, size int) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.Version, r.Acks, r.TimeoutMillis = 9, 1, 1000
	t := kmsg.NewProduceRequestTopic()
	t.Topic = "t"
	p := kmsg.NewProduceRequestTopicPartition()
	p.Records = bytes.Repeat([]byte{fill}, size)
	t.Partitions = append(t.Partitions, p)
	r.Topics = append(r.Topics, t)
	return r
}

// TestProduceBuffersOutliveTheirResponse: large Produce requests are read
// into recycled buffers, and a buffer is reused only after its request was
// answered: requests read ahead while earlier ones wait keep their bytes.
func TestProduceBuffersOutliveTheirResponse(t *testing.T) {
	h := &retainHandler{release: make(chan struct{}), served: make(chan struct{}, 16), changed: make(chan int32, 16)}
	c, _, _, _ := serve(t, h, Config{})
	r := bufio.NewReader(c)
	round := func(first int32, release bool) {
		var out []byte
		for i := range int32(4) {
			out = AppendRequest(out, first+i, nil, produceReq(byte(first+i), 3*minPooledFrame))
		}
		go c.Write(out)
		for range 4 {
			<-h.served
		}
		if release {
			close(h.release)
		}
		for i := range int32(4) {
			if corr := readResp(t, r, &kmsg.ProduceResponse{Version: 9}); corr != first+i {
				t.Fatalf("response %d, want %d", corr, first+i)
			}
		}
	}
	round(1, true)  // all four read ahead, then answered
	round(5, false) // reuses the first round's buffers
	select {
	case corr := <-h.changed:
		t.Fatalf("the records of request %d changed before it was answered", corr)
	default:
	}
}

// stagedHandler serves Produce as a Staged request and Metadata at once,
// logging when each takes effect. A Produce whose records start with a
// byte in gates prepares only once that gate is closed.
type stagedHandler struct {
	gates    map[byte]chan struct{}
	prepared chan byte
	mu       sync.Mutex
	log      []string
}

func (h *stagedHandler) Supported(key, version int16) bool {
	return (key == 0 && version >= 3 && version <= 9) || (key == 3 && version <= 12)
}

func (h *stagedHandler) note(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *stagedHandler) Serve(req *Request) Result {
	switch body := req.Body.(type) {
	case *kmsg.ProduceRequest:
		recs := body.Topics[0].Partitions[0].Records
		id, want := recs[0], bytes.Clone(recs)
		return Result{Staged: &Staged{
			Prepare: func() {
				if g := h.gates[id]; g != nil {
					<-g
				}
				h.prepared <- id
			},
			Commit: func() Result {
				if !bytes.Equal(recs, want) {
					h.note(fmt.Sprintf("produce %d: bytes changed", id))
				}
				h.note(fmt.Sprintf("produce %d", id))
				if body.Acks == 0 {
					return NoResponse
				}
				return Result{Response: body.ResponseKind()}
			},
		}}
	case *kmsg.MetadataRequest:
		h.note("metadata")
		return Result{Response: body.ResponseKind()}
	}
	return NoResponse
}

// TestStagedProducesTakeEffectInOrder: a Produce prepares while earlier
// ones are still preparing, but commits only after them, and a later
// request of another kind is served only once every earlier Produce has
// committed, acks=0 included.
func TestStagedProducesTakeEffectInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &stagedHandler{gates: map[byte]chan struct{}{1: make(chan struct{})}, prepared: make(chan byte, 4)}
		c, _, _, _ := serve(t, h, Config{})
		noAck := produceReq(3, 2*minPooledFrame)
		noAck.Acks = 0
		var out []byte
		out = AppendRequest(out, 1, nil, produceReq(1, 2*minPooledFrame))
		out = AppendRequest(out, 2, nil, produceReq(2, 100))
		out = AppendRequest(out, 3, nil, noAck)
		out = AppendRequest(out, 4, nil, metadataReq("t"))
		go c.Write(out)
		synctest.Wait() // 2 and 3 prepared; 1 waits at its gate; nothing committed, metadata not served
		if len(h.prepared) != 2 || len(h.log) != 0 {
			t.Fatalf("before the first produce prepared: %d prepared, log %v", len(h.prepared), h.log)
		}
		close(h.gates[1])
		r := bufio.NewReader(c)
		for _, want := range []int32{1, 2} {
			if corr := readResp(t, r, &kmsg.ProduceResponse{Version: 9}); corr != want {
				t.Fatalf("response %d, want %d", corr, want)
			}
		}
		if corr := readResp(t, r, &kmsg.MetadataResponse{Version: 9}); corr != 4 {
			t.Fatalf("response %d, want the metadata's 4", corr)
		}
		want := []string{"produce 1", "produce 2", "produce 3", "metadata"}
		if fmt.Sprint(h.log) != fmt.Sprint(want) {
			t.Fatalf("took effect as %v, want %v", h.log, want)
		}
	})
}

// A response written just before an acks=0 Produce (which owes none) is
// flushed to the peer even when nothing follows.
func TestResponseBeforeAnUnansweredProduceIsFlushed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &stagedHandler{prepared: make(chan byte, 1)}
		slow := &testHandler{release: make(chan struct{})}
		c, _, _, _ := serve(t, mixedHandler{h, slow}, Config{})
		p := produceReq(1, 100)
		p.Acks = 0
		var out []byte
		out = AppendRequest(out, 1, nil, metadataReq("slow"))
		out = AppendRequest(out, 2, nil, p)
		go c.Write(out)
		got := make(chan int32, 1)
		go func() {
			frame, err := ReadFrame(bufio.NewReader(c), 1<<20)
			if err != nil {
				return // the pipe closed at the end of a failed test
			}
			corr, _ := ParseResponse(frame, &kmsg.MetadataResponse{Version: 9})
			got <- corr
		}()
		synctest.Wait() // the produce has committed; the writer waits for "slow"
		close(slow.release)
		synctest.Wait()
		select {
		case corr := <-got:
			if corr != 1 {
				t.Fatalf("response %d, want 1", corr)
			}
		default:
			t.Fatal("the metadata response was never flushed")
		}
	})
}

// mixedHandler serves Produce with a stagedHandler and the rest with a
// testHandler.
type mixedHandler struct {
	*stagedHandler
	other *testHandler
}

func (m mixedHandler) Serve(req *Request) Result {
	if _, ok := req.Body.(*kmsg.ProduceRequest); ok {
		return m.stagedHandler.Serve(req)
	}
	return m.other.Serve(req)
}

// A flexible request header declaring more tagged fields than its bytes
// can hold is refused before any is read (a skipper looping over the
// declared count would run for many seconds), and a well-formed one with
// a tagged field still parses.
func TestForgedHeaderTagCountIsRefused(t *testing.T) {
	header := func(corr int32) []byte {
		b := kbin.AppendInt16(nil, 3) // Metadata
		b = kbin.AppendInt16(b, 9)    // flexible
		b = kbin.AppendInt32(b, corr)
		return kbin.AppendNullableString(b, nil)
	}
	forged := kbin.AppendUvarint(header(1), 1<<31)
	_, _, err := ParseRequest(forged)
	if !errors.Is(err, ErrBadFrame) || !strings.Contains(err.Error(), "2147483648 fields declared in 0 bytes") {
		t.Fatalf("err = %v, want a bad frame naming the forged count", err)
	}
	good := kbin.AppendUvarint(header(2), 1) // one tagged field: key 7, one byte
	good = kbin.AppendUvarint(good, 7)
	good = kbin.AppendUvarint(good, 1)
	good = append(good, 'x')
	good = metadataReq("t").AppendTo(good)
	if h, _, err := ParseRequest(good); err != nil || h.CorrelationID != 2 {
		t.Fatalf("a header with one tagged field: %+v, %v", h, err)
	}
}

// TestSizePrefixesAloneCostLittle: clients that announce 100 MiB frames
// and send a few bytes of them make the server allocate what arrived, not
// what was announced, once the receive budget is spent; the budget is
// whole again when they are gone.
func TestSizePrefixesAloneCostLittle(t *testing.T) {
	budget := NewReceiveBudget(4 << 20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 8 {
		c, _, _, done := serve(t, &testHandler{}, Config{Receive: budget})
		msg := binary.BigEndian.AppendUint32(nil, 100<<20)
		msg = append(msg, make([]byte, 4<<10)...)
		go func() { c.Write(msg); c.Close() }()
		<-done // the peer closed mid-frame
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
		t.Fatalf("8 announced 100 MiB frames of 4 KiB each allocated %d MiB", got>>20)
	}
	if used := budget.used.Load(); used != 0 {
		t.Fatalf("%d bytes of the budget still reserved", used)
	}
}

// TestFramesBeyondTheBudgetArriveWhole: with no budget left, a large
// frame is read as it arrives, into a growing buffer, and served intact;
// within the budget it is read into one buffer and its reservation given
// back.
func TestFramesBeyondTheBudgetArriveWhole(t *testing.T) {
	for _, size := range []int64{0, 64 << 20} {
		budget := NewReceiveBudget(size)
		c, _, _, _ := serve(t, &testHandler{}, Config{Receive: budget})
		r := bufio.NewReader(c)
		for i, n := range []int{eagerFrame - 100, 300 << 10, 900 << 10} {
			name := strings.Repeat(string(rune('a'+i)), n)
			req := kmsg.NewPtrMetadataRequest()
			req.Version = 12
			req.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
			go c.Write(AppendRequest(nil, int32(i), nil, req))
			resp := &kmsg.MetadataResponse{Version: 12}
			if corr := readResp(t, r, resp); corr != int32(i) || len(resp.Topics) != 1 || *resp.Topics[0].Topic != name {
				t.Fatalf("budget %d, %d-byte name: response %d did not echo it", size, n, corr)
			}
		}
		if used := budget.used.Load(); used != 0 {
			t.Fatalf("budget %d: %d bytes still reserved", size, used)
		}
	}
}
