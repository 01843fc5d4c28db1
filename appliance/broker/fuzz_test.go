package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fuzzConn is a connection reading a fixed request stream and discarding
// what the broker writes.
type fuzzConn struct{ r io.Reader }

func (c *fuzzConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fuzzConn) Close() error                { return nil }
func (c *fuzzConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092} }
func (c *fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzBrokerRequests feeds arbitrary request streams to the real broker,
// every API it serves with staged Produce requests among them, over an
// in-memory connection. Whatever arrives, the broker must not panic, the
// connection must end, and the broker must still answer a well-formed
// request afterwards.
//
// Streams holding a request at a flexible version are left out: kmsg
// reads a tagged-field section by looping over its declared count even
// once the frame is exhausted, so a forged count of a few bytes costs
// seconds of CPU or more (docs/COMPATIBILITY.md), which the fuzzer reports
// as a hang rather than anything of the broker's.
func FuzzBrokerRequests(f *testing.F) {
	n := startNode(f, f.TempDir(), func(c *Config, _ *storage.Config) { c.AutoCreateTopics = false })
	if _, err := n.admin().CreateTopic(ctxT(f), 2, 1, nil, "t"); err != nil {
		f.Fatal(err)
	}
	produce := func(acks int16, parts ...int32) kmsg.Request {
		r := kmsg.NewPtrProduceRequest()
		r.Version, r.Acks, r.TimeoutMillis = 8, acks, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "t"
		for _, p := range parts {
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = p, goodBatch(f, "a", "bb", "ccc")
			rt.Partitions = append(rt.Partitions, rp)
		}
		r.Topics = append(r.Topics, rt)
		return r
	}
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 8
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxWaitMillis, fetch.MaxBytes = 11, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	stream := func(reqs ...kmsg.Request) []byte {
		var out []byte
		for i, r := range reqs {
			out = kafkawire.AppendRequest(out, int32(i+1), nil, r)
		}
		return out
	}
	f.Add(stream(produce(-1, 0, 1)))
	f.Add(stream(produce(0, 1), meta, produce(1, 0, 0), fetch))
	f.Add(stream(produce(-1, 0), produce(-1, 1), fetch, meta))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if hasFlexible(in) {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = kafkawire.ServeConn(context.Background(), &fuzzConn{r: bytes.NewReader(in)}, kafkawire.ConnInfo{Listener: "kafka"}, n.broker, kafkawire.Config{MaxFrameSize: 1 << 20})
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the connection did not end within 30 s of its input")
		}
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 12
		res := n.broker.Serve(&kafkawire.Request{Header: kafkawire.Header{Key: req.Key(), Version: req.Version}, Body: req, Conn: &kafkawire.ConnInfo{Listener: "kafka"}, Ctx: context.Background()})
		if res.Response == nil || len(res.Response.(*kmsg.MetadataResponse).Brokers) == 0 {
			t.Fatalf("the broker no longer answers Metadata: %+v", res)
		}
	})
}

// hasFlexible reports whether a frame of the stream in holds a request at
// a version kmsg decodes as flexible.
func hasFlexible(in []byte) bool {
	for len(in) >= 8 {
		size := int(binary.BigEndian.Uint32(in))
		key, version := int16(binary.BigEndian.Uint16(in[4:])), int16(binary.BigEndian.Uint16(in[6:]))
		if req := kmsg.RequestForKey(key); req != nil {
			req.SetVersion(version)
			if req.IsFlexible() {
				return true
			}
		}
		if size < 0 || size > len(in)-4 {
			return false
		}
		in = in[4+size:]
	}
	return false
}
