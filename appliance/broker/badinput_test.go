package broker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn speaks the protocol by hand, for requests no client would send.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	corr int32
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(req kmsg.Request) {
	rc.t.Helper()
	rc.corr++
	if _, err := rc.c.Write(kafkawire.AppendRequest(nil, rc.corr, nil, req)); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) roundTrip(req kmsg.Request) kmsg.Response {
	rc.t.Helper()
	rc.send(req)
	frame, err := kafkawire.ReadFrame(rc.r, 64<<20)
	if err != nil {
		rc.t.Fatalf("read response to %s: %v", kmsg.NameForKey(req.Key()), err)
	}
	resp := req.ResponseKind()
	corr, err := kafkawire.ParseResponse(frame, resp)
	if err != nil || corr != rc.corr {
		rc.t.Fatalf("parse response: corr %d (want %d): %v", corr, rc.corr, err)
	}
	return resp
}

func produceRaw(rc *rawConn, topic string, batch []byte) kmsg.ProduceResponseTopicPartition {
	return produceRawTo(rc, topic, 0, batch)
}

// produceRawTo produces batch to a partition with acks=all.
func produceRawTo(rc *rawConn, topic string, partition int32, batch []byte) kmsg.ProduceResponseTopicPartition {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rc.roundTrip(req).(*kmsg.ProduceResponse)
	return resp.Topics[0].Partitions[0]
}

func goodBatch(t testing.TB, vals ...string) []byte {
	recs := make([]record.Simple, len(vals))
	for i, v := range vals {
		recs[i] = record.Simple{Value: []byte(v)}
	}
	b, err := record.Build(record.BatchOptions{ProducerID: -1, BaseTimestamp: time.Now().UnixMilli()}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadBatchesAreRejectedAndNothingIsAppended(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := n.admin().CreateTopic(ctxT(t), 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, n.addr)
	if sp := produceRaw(rc, "t", goodBatch(t, "a", "b")); sp.ErrorCode != 0 || sp.BaseOffset != 0 {
		t.Fatalf("good batch: %+v", sp)
	}
	mutate := func(f func([]byte) []byte) []byte { return f(goodBatch(t, "x", "y", "z")) }
	cases := []struct {
		name string
		b    []byte
		want int16
	}{
		{"bad crc", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }), kerr.CorruptMessage.Code},
		{"length too long", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], binary.BigEndian.Uint32(b[8:])+10); return b }), kerr.CorruptMessage.Code},
		{"length too short", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], binary.BigEndian.Uint32(b[8:])-10); return b }), kerr.CorruptMessage.Code},
		{"truncated", mutate(func(b []byte) []byte { return b[:30] }), kerr.CorruptMessage.Code},
		{"magic 0", mutate(func(b []byte) []byte { b[16] = 0; return b }), kerr.InvalidRecord.Code},
		{"magic 1", mutate(func(b []byte) []byte { b[16] = 1; return b }), kerr.InvalidRecord.Code},
		{"control batch", mutate(func(b []byte) []byte { b[22] |= record.AttrControl; record.Batch(b).UpdateCRC(); return b }), kerr.InvalidRecord.Code},
		{"lying record count", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[57:], 4)
			binary.BigEndian.PutUint32(b[23:], 3)
			record.Batch(b).UpdateCRC()
			return b
		}), kerr.InvalidRecord.Code},
	}
	for _, c := range cases {
		sp := produceRaw(rc, "t", c.b)
		if sp.ErrorCode != c.want || sp.ErrorMessage == nil {
			t.Errorf("%s: error %d (%v), want %d with a message", c.name, sp.ErrorCode, sp.ErrorMessage, c.want)
		}
	}
	// Nothing was appended: the next good batch lands right after the first.
	if sp := produceRaw(rc, "t", goodBatch(t, "c")); sp.ErrorCode != 0 || sp.BaseOffset != 2 {
		t.Fatalf("good batch after the bad ones: %+v", sp)
	}
	_, p, _ := n.broker.partition("t", 0)
	if off := p.log.Offsets(); off.LEO != 3 {
		t.Fatalf("log end %d, want 3", off.LEO)
	}
}

func TestUnknownKeysAndBadFramesDoNotHurtTheBroker(t *testing.T) {
	n := startNode(t, t.TempDir())
	frames := [][]byte{
		func() []byte { // api key 999
			b := kafkawire.AppendRequest(nil, 1, nil, kmsg.NewPtrMetadataRequest())
			binary.BigEndian.PutUint16(b[4:], 999)
			return b
		}(),
		kafkawire.AppendRequest(nil, 1, nil, &kmsg.AddPartitionsToTxnRequest{Version: 3}), // known to kmsg, not served
		kafkawire.AppendRequest(nil, 1, nil, &kmsg.ProduceRequest{Version: 2}),            // below the served range
		{0x7f, 0xff, 0xff, 0xff},       // 2 GiB frame
		{0, 0, 0, 6, 0, 3, 0, 9, 0, 0}, // truncated header
		append([]byte{0, 0, 0, 12, 0, 3, 0, 12, 0, 0, 0, 1, 0, 0}, 0xff, 0xff), // garbage body
	}
	for i, f := range frames {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(f)
		buf := make([]byte, 1)
		if _, err := c.Read(buf); err == nil {
			t.Errorf("frame %d: the broker answered instead of closing the connection", i)
		}
		c.Close()
	}
	// The broker still serves.
	rc := dialRaw(t, n.addr)
	resp := rc.roundTrip(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 || len(resp.ApiKeys) != len(apiVersions) {
		t.Fatalf("after bad input: %+v", resp)
	}
}

func TestApiVersionsAdvertisesExactlyWhatIsServed(t *testing.T) {
	n := startNode(t, t.TempDir())
	rc := dialRaw(t, n.addr)
	resp := rc.roundTrip(&kmsg.ApiVersionsRequest{Version: 3, ClientSoftwareName: "test", ClientSoftwareVersion: "1"}).(*kmsg.ApiVersionsResponse)
	for _, k := range resp.ApiKeys {
		want, ok := apiVersions[k.ApiKey]
		if !ok || want != [2]int16{k.MinVersion, k.MaxVersion} {
			t.Errorf("advertised %s v%d-%d, table has %v", kmsg.NameForKey(k.ApiKey), k.MinVersion, k.MaxVersion, want)
		}
	}
	// Every advertised key at every advertised version gets an answer.
	for key, vr := range apiVersions {
		for v := vr[0]; v <= vr[1]; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			if p, ok := req.(*kmsg.ProduceRequest); ok {
				p.Acks = 1
			}
			if f, ok := req.(*kmsg.FetchRequest); ok {
				f.MaxWaitMillis = 0
			}
			resp := rc.roundTrip(req)
			if resp.Key() != key {
				t.Fatalf("%s v%d answered with key %d", kmsg.NameForKey(key), v, resp.Key())
			}
		}
	}
	// A version newer than ours gets v0 with UNSUPPORTED_VERSION.
	frame := kafkawire.AppendRequest(nil, 42, nil, &kmsg.ApiVersionsRequest{Version: 0})
	binary.BigEndian.PutUint16(frame[6:], 99)
	rc.c.Write(frame)
	f, err := kafkawire.ReadFrame(rc.r, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v0 := &kmsg.ApiVersionsResponse{Version: 0}
	if _, err := kafkawire.ParseResponse(f, v0); err != nil || v0.ErrorCode != kerr.UnsupportedVersion.Code || len(v0.ApiKeys) == 0 {
		t.Fatalf("too-new ApiVersions: %+v %v", v0, err)
	}
}

func readFrame(t *testing.T, rc *rawConn) []byte {
	t.Helper()
	f, err := kafkawire.ReadFrame(rc.r, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func parseResp(frame []byte, resp kmsg.Response) (int32, error) {
	return kafkawire.ParseResponse(frame, resp)
}

// A large request's batches are checked in parallel but appended in the
// request's order: a bad batch among good ones is refused alone, two
// batches for one partition land in the order they were sent, and the
// partitions of a later request continue from there.
func TestLargeRequestAppendsInOrderAroundABadBatch(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := n.admin().CreateTopic(ctxT(t), 3, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	big := func(prefix string, count int) []byte {
		vals := make([]string, count)
		for i := range vals {
			vals[i] = fmt.Sprintf("%s-%04d-%s", prefix, i, strings.Repeat("v", 1000))
		}
		return goodBatch(t, vals...)
	}
	bad := big("bad", 40)
	bad[len(bad)-1] ^= 0xff
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	for _, part := range []struct {
		p int32
		b []byte
	}{{0, big("first", 40)}, {1, bad}, {2, big("other", 40)}, {0, big("second", 30)}} {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = part.p, part.b
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	if size := len(kafkawire.AppendRequest(nil, 1, nil, req)); size < 128<<10 {
		t.Fatalf("request of %d bytes is too small to be checked in parallel", size)
	}
	resp := dialRaw(t, n.addr).roundTrip(req).(*kmsg.ProduceResponse)
	got := resp.Topics[0].Partitions
	want := []struct {
		code int16
		base int64
	}{{0, 0}, {kerr.CorruptMessage.Code, -1}, {0, 0}, {0, 40}}
	for i, w := range want {
		if got[i].Partition != rt.Partitions[i].Partition || got[i].ErrorCode != w.code || got[i].BaseOffset != w.base {
			t.Errorf("answer %d: partition %d error %d base %d, want partition %d error %d base %d", i, got[i].Partition, got[i].ErrorCode, got[i].BaseOffset, rt.Partitions[i].Partition, w.code, w.base)
		}
	}
	// A later large request naming each partition once.
	req2 := kmsg.NewPtrProduceRequest()
	req2.Version, req2.Acks, req2.TimeoutMillis = 9, -1, 5000
	rt2 := kmsg.NewProduceRequestTopic()
	rt2.Topic = "t"
	for _, part := range []int32{2, 1, 0} {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = part, big(fmt.Sprint("third", part), 40)
		rt2.Partitions = append(rt2.Partitions, rp)
	}
	req2.Topics = append(req2.Topics, rt2)
	got = dialRaw(t, n.addr).roundTrip(req2).(*kmsg.ProduceResponse).Topics[0].Partitions
	for i, w := range []int64{40, 0, 70} {
		if got[i].ErrorCode != 0 || got[i].BaseOffset != w {
			t.Errorf("second request, answer %d (partition %d): error %d base %d, want base %d", i, got[i].Partition, got[i].ErrorCode, got[i].BaseOffset, w)
		}
	}
	ends := map[int32]int64{0: 110, 1: 40, 2: 80}
	for part, end := range ends {
		_, p, _ := n.broker.partition("t", part)
		if leo := p.log.Offsets().LEO; leo != end {
			t.Errorf("partition %d: log end %d, want %d", part, leo, end)
		}
	}
	c := n.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"t": {0: kgo.NewOffset().AtStart()}}))
	var vals []string
	for len(vals) < 110 {
		fs := c.PollFetches(ctxT(t))
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			vals = append(vals, string(r.Value[:strings.LastIndexByte(string(r.Value), '-')]))
		})
	}
	for i, v := range vals {
		w := fmt.Sprintf("first-%04d", i)
		switch {
		case i >= 70:
			w = fmt.Sprintf("third0-%04d", i-70)
		case i >= 40:
			w = fmt.Sprintf("second-%04d", i-40)
		}
		if v != w {
			t.Fatalf("partition 0, offset %d: %q, want %q", i, v, w)
		}
	}
}
