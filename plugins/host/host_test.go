package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// Tests share plugintest's compilation cache: compiling a Go guest takes
// seconds, more under the race detector.
var cacheDir = plugintest.CacheDir

// Generous deadlines: the tests check behaviour, not speed, and CI runs
// them under the race detector on a loaded machine.
var slow = sandbox.Timeouts{Partition: 20 * time.Second, Produce: 20 * time.Second, Fetch: 20 * time.Second, Federate: 20 * time.Second, Cleanup: 20 * time.Second}

func newHost(t testing.TB, mod func(*host.Config)) *host.Host {
	t.Helper()
	cfg := host.Config{Config: sandbox.Config{CacheDir: cacheDir, Timeouts: slow, InitTimeout: 20 * time.Second, Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }}}
	if mod != nil {
		mod(&cfg)
	}
	h, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

// example builds and registers examples/plugins/<name>.
func example(t testing.TB, h *host.Host, name string) host.Module {
	t.Helper()
	wasm, err := os.ReadFile(plugintest.BuildGo(t, "../../examples/plugins/"+name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := h.Register(context.Background(), wasm)
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return m
}

type rec struct {
	key, value []byte
	headers    []kmsg.Header
	tsDelta    int64
}

func kafkaBatch(t testing.TB, codec record.Codec, recs []rec) []byte {
	t.Helper()
	var simple []record.Simple
	for _, r := range recs {
		simple = append(simple, record.Simple{Key: r.key, Value: r.value, Headers: r.headers, TimestampDelta: r.tsDelta})
	}
	b, err := record.Build(record.BatchOptions{BaseOffset: 0, Codec: codec, BaseTimestamp: 1_699_999_000_000, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 100}, simple)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := record.Validate(b, record.ValidateOptions{Records: true}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMurmur2MatchesKafkaClients(t *testing.T) {
	h := newHost(t, nil)
	m := example(t, h, "murmur2")
	p, err := h.Partitioner(context.Background(), m.Digest, nil, host.CallOptions{Topic: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []rec
	for i := range 3000 {
		key := make([]byte, rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		if i%100 == 7 {
			key = nil // null key: the broker's built-in rule
		}
		recs = append(recs, rec{key: key, value: []byte("v")})
	}
	for _, s := range []string{"21", "foobar", "a-little-bit-long-string", "a-little-bit-longer-string", "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", "abc"} {
		recs = append(recs, rec{key: []byte(s)})
	}
	kp := kgo.StickyKeyPartitioner(nil).ForTopic("orders")
	for _, codec := range []record.Codec{record.CodecNone, record.CodecZstd} {
		for _, n := range []int32{1, 7, 12, 100} {
			got, err := p.Partition(context.Background(), kafkaBatch(t, codec, recs), n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs) {
				t.Fatalf("%d partitions for %d records", len(got), len(recs))
			}
			for i, r := range recs {
				want := host.PartitionDefault
				if r.key != nil {
					want = int32(kp.Partition(&kgo.Record{Key: r.key}, int(n)))
					if b, ok := host.BuiltinPartition(r.key, n); !ok || b != want {
						t.Fatalf("BuiltinPartition(%x, %d) = %d, kgo says %d", r.key, n, b, want)
					}
				}
				if got[i] != want {
					t.Fatalf("codec %v, %d partitions, record %d (key %x): plugin %d, kgo %d", codec, n, i, r.key, got[i], want)
				}
			}
		}
	}
	if st := p.Status(); st.Counters.Calls == 0 || st.Counters.Records != uint64(8*len(recs)) {
		t.Fatalf("counters = %+v", st.Counters)
	}
}

func TestJSONFieldPartitioner(t *testing.T) {
	h := newHost(t, nil)
	m := example(t, h, "jsonfield")
	ctx := context.Background()
	if _, err := h.Partitioner(ctx, m.Digest, []byte(`{"fallback":"maybe"}`), host.CallOptions{}); !errors.Is(err, host.ErrConfig) {
		t.Fatalf("bad config = %v, want ErrConfig", err)
	}
	p, err := h.Partitioner(ctx, m.Digest, []byte(`{"field":"site_id","fallback":"reject"}`), host.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recs := []rec{
		{key: []byte("a"), value: []byte(`{"site_id":"berlin-3","t":1}`)},
		{key: []byte("b"), value: []byte(`{"t":2, "site_id": "berlin-3"}`)},
		{key: []byte("c"), value: []byte(`{"site_id":17}`)},
		{key: []byte("d"), value: []byte(`not json`)},
	}
	got, err := p.Partition(ctx, kafkaBatch(t, record.CodecNone, recs), 12)
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{abi.KafkaPartition([]byte("berlin-3"), 12), abi.KafkaPartition([]byte("berlin-3"), 12), abi.KafkaPartition([]byte("17"), 12), host.PartitionReject}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("partitions %v, want %v", got, want)
	}
}

func TestFilterTransform(t *testing.T) {
	h := newHost(t, func(c *host.Config) { c.MaxBatchRecords = 3 }) // several calls per batch
	m := example(t, h, "filter")
	ctx := context.Background()
	tr, err := h.Transformer(ctx, m.Digest, []byte(`{"drop_levels":["debug","trace"],"redact":["password","card"]}`), host.CallOptions{Topic: "logs"})
	if err != nil {
		t.Fatal(err)
	}
	recs := []rec{
		{key: []byte("k0"), value: []byte(`{"level":"info","msg":"hello"}`), tsDelta: 0},
		{key: []byte("k1"), value: []byte(`{"level":"debug","msg":"noise"}`), tsDelta: 1},
		{key: []byte("k2"), value: []byte(`{"level":"info","user":"ann","password":"hunter2"}`), tsDelta: 2, headers: []kmsg.Header{{Key: "trace", Value: []byte("t1")}}},
		{key: []byte("k3"), value: []byte(`plain text`), tsDelta: 3, headers: []kmsg.Header{{Key: "eddy-drop", Value: nil}}},
		{key: nil, value: nil, tsDelta: 4}, // a tombstone passes
		{key: []byte("k5"), value: []byte(`{"card":"4111 1111","level":"warn"}`), tsDelta: 5},
		{key: []byte("k6"), value: []byte(`{"level":"trace"}`), tsDelta: 6},
	}
	for _, codec := range []record.Codec{record.CodecNone, record.CodecLZ4} {
		in := kafkaBatch(t, codec, recs)
		res, err := tr.Transform(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || res.Kept != 2 || res.Dropped != 3 || res.Replaced != 2 || res.Emitted != 2 || len(res.Rejected) != 0 {
			t.Fatalf("result = %+v", res)
		}
		out, err := record.Validate(res.Out, record.ValidateOptions{Records: true})
		if err != nil {
			t.Fatalf("output batch: %v", err)
		}
		// Seven records from sequence 100 in, four out: the output ends
		// at the producer's last sequence, 106.
		if out.ProducerID() != 42 || out.ProducerEpoch() != 3 || out.BaseSequence() != 103 || out.LastSequence() != 106 || out.Codec() != codec || out.RecordCount() != 4 {
			t.Fatalf("output header: pid %d epoch %d seq %d..%d codec %v count %d", out.ProducerID(), out.ProducerEpoch(), out.BaseSequence(), out.LastSequence(), out.Codec(), out.RecordCount())
		}
		type got struct {
			key, value string
			ts, off    int64
			headers    int
		}
		var gots []got
		_ = out.EachRecord(0, func(r *record.Record) error {
			gots = append(gots, got{string(r.Key), string(r.Value), r.Timestamp, r.Offset, len(r.Headers)})
			return nil
		})
		base := int64(1_699_999_000_000)
		want := []got{
			{"k0", `{"level":"info","msg":"hello"}`, base, 0, 0},
			{"k2", `{"level":"info","user":"ann","password":"***"}`, base + 2, 1, 1},
			{"", "", base + 4, 2, 0},
			{"k5", `{"card":"***","level":"warn"}`, base + 5, 3, 0},
		}
		if fmt.Sprint(gots) != fmt.Sprint(want) {
			t.Fatalf("codec %v: records\n%v\nwant\n%v", codec, gots, want)
		}
		if out.MaxTimestamp() != base+5 {
			t.Fatalf("max timestamp %d", out.MaxTimestamp())
		}
	}
	// Nothing to change: the input comes back untouched.
	clean := kafkaBatch(t, record.CodecNone, []rec{{key: []byte("a"), value: []byte(`{"level":"info"}`)}, {key: []byte("b"), value: []byte("x")}})
	res, err := tr.Transform(ctx, clean)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Kept != 2 || &res.Out[0] != &clean[0] {
		t.Fatalf("unchanged batch: %+v", res)
	}
	// The first change in a later call: the records of the calls before
	// it, all kept, lead the rebuilt batch.
	var late []rec
	for i := range 8 {
		late = append(late, rec{key: fmt.Appendf(nil, "l%d", i), value: []byte(`{"level":"info"}`), tsDelta: int64(i)})
	}
	late[6].value = []byte(`{"password":"x","level":"info"}`)
	res, err = tr.Transform(ctx, kafkaBatch(t, record.CodecNone, late))
	if err != nil || !res.Changed || res.Kept != 7 || res.Replaced != 1 {
		t.Fatalf("late change: %+v, %v", res, err)
	}
	var lateOut []string
	_ = record.Batch(res.Out).EachRecord(0, func(r *record.Record) error {
		lateOut = append(lateOut, fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, r.Value))
		return nil
	})
	wantLate := `[0:l0={"level":"info"} 1:l1={"level":"info"} 2:l2={"level":"info"} 3:l3={"level":"info"} 4:l4={"level":"info"} 5:l5={"level":"info"} 6:l6={"password":"***","level":"info"} 7:l7={"level":"info"}]`
	if fmt.Sprint(lateOut) != wantLate {
		t.Fatalf("late change: records\n%v\nwant\n%v", lateOut, wantLate)
	}
	// Everything dropped: no output batch.
	res, err = tr.Transform(ctx, kafkaBatch(t, record.CodecNone, []rec{{key: []byte("a"), value: []byte(`{"level":"debug"}`)}}))
	if err != nil || !res.Changed || res.Out != nil || res.Dropped != 1 {
		t.Fatalf("all dropped: %+v, %v", res, err)
	}
	if _, err := tr.Transform(ctx, []byte("short")); !errors.Is(err, host.ErrBatch) {
		t.Fatalf("garbage batch = %v", err)
	}
}

func TestCleanupPolicy(t *testing.T) {
	h := newHost(t, nil)
	m := example(t, h, "cleanup")
	ctx := context.Background()
	c, err := h.Cleanup(ctx, m.Digest, nil, host.CallOptions{Topic: "logs"})
	if err != nil {
		t.Fatal(err)
	}
	now := int64(1_700_000_000_000)
	for _, tc := range []struct {
		meta abi.SegmentMeta
		want abi.SegmentDecision
	}{
		{abi.SegmentMeta{MinTimestamp: now - 2*3600_000, MaxTimestamp: now - 3600_000 - 1}, abi.SegmentRewrite},
		{abi.SegmentMeta{MinTimestamp: now - 60_000, MaxTimestamp: now}, abi.SegmentDefault},
		{abi.SegmentMeta{MinTimestamp: now - 2*3600_000, Flags: abi.SegmentActive}, abi.SegmentDefault},
	} {
		got, err := c.Segment(ctx, tc.meta)
		if err != nil || got != tc.want {
			t.Fatalf("segment %+v = %v, %v; want %v", tc.meta, got, err, tc.want)
		}
	}
	// Base timestamp 1_699_999_000_000 is 1000 s before "now".
	recs := []rec{
		{key: []byte("a"), value: []byte(`{"level":"debug"}`), tsDelta: -3 * 3600_000}, // old debug: drop
		{key: []byte("b"), value: []byte(`{"level":"info"}`), tsDelta: -3 * 3600_000},  // old info: default
		{key: []byte("c"), value: []byte(`{"level":"debug"}`)},                         // recent debug: default
		{key: []byte("d"), value: []byte("x"), headers: []kmsg.Header{{Key: "level", Value: []byte("debug")}}, tsDelta: -2 * 3600_000},
	}
	got, err := c.Records(ctx, kafkaBatch(t, record.CodecNone, recs), 0, []bool{true, false, false, false})
	if err != nil {
		t.Fatal(err)
	}
	want := []abi.KeepDecision{abi.CleanupDrop, abi.CleanupDefault, abi.CleanupDefault, abi.CleanupDrop}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records = %v, want %v", got, want)
	}
	if _, err := c.Records(ctx, kafkaBatch(t, record.CodecNone, recs), 0, []bool{true}); err == nil {
		t.Fatal("a latest slice of the wrong length was accepted")
	}
}

// TestBadPluginThroughHost checks the host's error surface and that a
// degraded module does not affect a healthy one.
func TestBadPluginThroughHost(t *testing.T) {
	h := newHost(t, func(c *host.Config) {
		c.Breaker = sandbox.BreakerConfig{MaxFailures: 2, Window: time.Minute, MinBackoff: time.Minute}
	})
	wasm, err := os.ReadFile(plugintest.BuildGo(t, "testdata/badplugin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bad, err := h.Register(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	good := example(t, h, "murmur2")
	p, err := h.Partitioner(ctx, bad.Digest, []byte("panic"), host.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	batch := kafkaBatch(t, record.CodecNone, []rec{{key: []byte("k"), value: []byte("v")}})
	for range 2 {
		if _, err := p.Partition(ctx, batch, 3); !errors.Is(err, host.ErrStatus) {
			t.Fatalf("partition = %v, want ErrStatus", err)
		}
	}
	_, err = p.Partition(ctx, batch, 3)
	if !errors.Is(err, host.ErrCircuitOpen) || !strings.Contains(err.Error(), "plugin bug") {
		t.Fatalf("partition with the circuit open = %v", err)
	}
	st, err := h.Status(bad.Digest)
	if err != nil || st.State != sandbox.Degraded || st.Counters.Failures != 2 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	g, err := h.Partitioner(ctx, good.Digest, nil, host.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Partition(ctx, batch, 3); err != nil {
		t.Fatalf("healthy module: %v", err)
	}
	if gs, _ := h.Status(good.Digest); gs.State != sandbox.Healthy {
		t.Fatalf("healthy module reported %v", gs.State)
	}
	if _, err := h.Transformer(ctx, good.Digest, nil, host.CallOptions{}); !errors.Is(err, host.ErrKind) {
		t.Fatalf("transformer of a partitioner = %v", err)
	}
	if _, err := h.Transformer(ctx, good.Digest, nil, host.CallOptions{Routes: 9}); err == nil {
		t.Fatal("9 routes accepted")
	}
	if !bytes.Contains([]byte(bad.Digest.String()), []byte("sha256:")) {
		t.Fatal("digest string")
	}
}

// TestExamplesAreInstrumented registers every example plugin, Go and
// AssemblyScript: each takes the loop-head guard, not wazero's fallback,
// which costs Go guests 4 to 8 times their speed.
func TestExamplesAreInstrumented(t *testing.T) {
	h := newHost(t, nil)
	mods := map[string]host.Module{}
	for _, name := range []string{"murmur2", "jsonfield", "filter", "cleanup"} {
		mods[name] = example(t, h, name)
	}
	for _, name := range []string{"as-murmur2", "as-filter"} {
		wasm, err := os.ReadFile("../../examples/plugins/testdata/" + name + ".wasm")
		if err != nil {
			t.Fatal(err)
		}
		if mods[name], err = h.Register(context.Background(), wasm); err != nil {
			t.Fatal(err)
		}
	}
	for name, m := range mods {
		if m.Guard != sandbox.GuardInterrupt {
			t.Errorf("%s: guard %v, want the loop-head guard", name, m.Guard)
		}
	}
}

// A large rebuilt batch's buffer goes back to the host on Release and
// serves the next rebuilt batch; Release of an unchanged result never
// hands the caller's input to the pool.
func TestTransformReleaseRecyclesOnlyRebuiltBatches(t *testing.T) {
	h := newHost(t, nil)
	tr, err := h.Transformer(context.Background(), example(t, h, "filter").Digest, nil, host.CallOptions{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	transform := func(b []byte) host.Result {
		t.Helper()
		r, err := tr.Transform(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The buffers are recycled through a sync.Pool, which may drop what it
	// is given (a collection empties it, and the race detector drops a
	// quarter of what it is handed) and keeps one buffer per P that only
	// that P's Gets find: collections are held off, the test runs on one
	// P (the release and the next rebuild may run on different goroutines,
	// and so on different Ps), and a buffer coming back is asked for
	// within a few tries.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	recs := benchRecords(2000) // about 200 KiB, every record redacted
	in := kafkaBatch(t, record.CodecNone, recs)
	var want []byte
	var first, second host.Result
	for try := 0; ; try++ {
		first = transform(in)
		if !first.Changed {
			t.Fatal("transform left a batch to redact unchanged")
		}
		want = append(want[:0], first.Out...)
		first.Release()
		second = transform(in)
		if &second.Out[0] == &first.Out[0] {
			break
		}
		if try == 20 {
			t.Fatal("a released buffer never served the next rebuilt batch")
		}
		second.Release()
	}
	if !bytes.Equal(second.Out, want) {
		t.Fatal("the batch rebuilt into a recycled buffer differs")
	}
	again := second // a copy, released after the original below
	second.Release()

	// Nothing to change: Out is the input, and Release leaves it alone,
	// however often the pool is asked after it.
	var kept []rec
	for i := range 2000 {
		kept = append(kept, rec{key: recs[i].key, value: []byte(`{"level":"info","msg":"nothing to redact here"}`)})
	}
	plain := kafkaBatch(t, record.CodecNone, kept)
	var third host.Result
	for range 10 {
		same := transform(plain)
		if same.Changed || &same.Out[0] != &plain[0] {
			t.Fatalf("unchanged batch: changed %v, or a copy", same.Changed)
		}
		same.Release()
		if third.Out != nil {
			third.Release()
		}
		third = transform(in)
		if &third.Out[0] == &plain[0] {
			t.Fatal("the input of an unchanged transform was recycled")
		}
	}

	// Releasing a copy of a released result does nothing: the buffer, now
	// the third result's or free, is not handed out twice.
	again.Release()
	held := map[*byte]bool{&third.Out[0]: true}
	for range 6 {
		r := transform(in)
		if held[&r.Out[0]] {
			t.Fatal("a buffer in use was handed out again after a second release")
		}
		held[&r.Out[0]] = true
	}
}
