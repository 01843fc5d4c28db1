package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// The plugins these tests run, built once per test process.
const (
	murmur2Dir   = "../../examples/plugins/murmur2"
	jsonfieldDir = "../../examples/plugins/jsonfield"
	badpluginDir = "../../plugins/host/testdata/badplugin"
)

// compiledCache is shared by the tests' cache directories (through a
// symlink) so that a Go guest is compiled once, not once per test: wazero
// keys compiled code by the module's bytes and its own version.
var compiledCache = filepath.Join(os.TempDir(), "eddy-sdk-client-compiled")

// slow bounds loads: compiling a Go guest takes seconds under the race
// detector on a loaded machine.
const slow = 3 * time.Minute

// registry is a kfake cluster playing Eddy's part: the plugin registry
// topic and topics with plugin configs.
type registry struct {
	addr string
	adm  *kadm.Client
	cl   *kgo.Client
}

func newRegistry(t *testing.T, withRegistryTopic bool) *registry {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchMaxBytes(32<<20), kgo.MaxBufferedBytes(256<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r := &registry{addr: addr, adm: kadm.NewClient(cl), cl: cl}
	if withRegistryTopic {
		r.createTopic(t, RegistryTopic, 1, map[string]string{"cleanup.policy": "compact", "max.message.bytes": "33554432"})
	}
	return r
}

func (r *registry) createTopic(t *testing.T, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = &v
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.adm.CreateTopic(ctx, partitions, 1, cfg, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// add stores a module and a name for it the way the broker's registry
// does, and returns its digest.
func (r *registry) add(t *testing.T, name, wasmPath string) string {
	t.Helper()
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	d := sandbox.DigestOf(wasm).String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := r.cl.ProduceSync(ctx,
		&kgo.Record{Topic: RegistryTopic, Key: []byte("module:" + d), Value: wasm},
		&kgo.Record{Topic: RegistryTopic, Key: []byte("name:" + name), Value: []byte(d)},
	)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return d
}

func (r *registry) setConfig(t *testing.T, topic, key string, value *string) {
	t.Helper()
	op := kadm.SetConfig
	if value == nil {
		op = kadm.DeleteConfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: key, Value: value}}, topic)
	if err == nil {
		_, err = res.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("alter %s %s: %v", topic, key, err)
	}
}

// cacheDir returns a fresh cache directory whose compiled code is shared.
func cacheDir(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll(compiledCache, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(compiledCache, filepath.Join(dir, "compiled")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// connect returns a client of reg that places records with p.
func connect(t *testing.T, reg *registry, p *Partitioner) *kgo.Client {
	t.Helper()
	cl, err := New(Transport("tcp"), Brokers(reg.addr), PluginPartitioner(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newPartitioner(t *testing.T, cfg PartitionerConfig) *Partitioner {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir(t)
	}
	if cfg.LoadTimeout == 0 {
		cfg.LoadTimeout = slow
	}
	return NewPartitioner(cfg)
}

// produce produces rs one by one and returns, for each, the partition it
// went to or the error (through RecordError).
func produce(t *testing.T, cl *kgo.Client, rs ...*kgo.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), slow)
	defer cancel()
	errs := make([]error, len(rs))
	for i, r := range rs {
		res := cl.ProduceSync(ctx, r)
		errs[i] = RecordError(res[0].Record, res[0].Err)
	}
	return errs
}

func kv(topic, key, value string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

func TestPluginPartitionerPlacesByPlugin(t *testing.T) {
	reg := newRegistry(t, true)
	d := reg.add(t, "site", plugintest.BuildGo(t, jsonfieldDir))
	const parts = 6
	reg.createTopic(t, "telemetry", parts, map[string]string{
		ConfigPartitioner:       "site@" + d,
		ConfigPartitionerConfig: `{"field":"site_id","fallback":"reject"}`,
	})
	reg.createTopic(t, "plain", parts, nil)
	p := newPartitioner(t, PartitionerConfig{})
	cl := connect(t, reg, p)

	// Loaded lazily: nothing is known before the first record.
	if _, ok := p.Binding("telemetry"); ok {
		t.Fatal("binding loaded before the first record")
	}
	var recs []*kgo.Record
	keyed := false // some record whose key and site hash differently
	for i := range 60 {
		site := fmt.Sprintf("site-%d", i%7)
		key := fmt.Sprintf("dev-%d", i)
		keyed = keyed || abi.KafkaPartition([]byte(key), parts) != abi.KafkaPartition([]byte(site), parts)
		recs = append(recs, kv("telemetry", key, fmt.Sprintf(`{"ts":%d,"site_id":%q,"v":1.5}`, i, site)))
	}
	if !keyed {
		t.Fatal("test data cannot tell the key from the site")
	}
	seen := map[int32]bool{}
	for i, err := range produce(t, cl, recs...) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want := abi.KafkaPartition(fmt.Appendf(nil, "site-%d", i%7), parts)
		if got := recs[i].Partition; got != want {
			t.Fatalf("record %d (site-%d) went to partition %d, want %d", i, i%7, got, want)
		}
		seen[recs[i].Partition] = true
	}
	if len(seen) < 2 {
		t.Fatalf("every record in partitions %v", seen)
	}
	b, ok := p.Binding("telemetry")
	if !ok || b.Err != nil || b.Digest != d || b.Name != "site" || b.OnError != "reject" || b.Timeout != DefaultPartitionTimeout {
		t.Fatalf("binding: %+v", b)
	}

	// The plugin refuses a value without the field.
	bad := kv("telemetry", "dev-x", `{"other":1}`)
	err := produce(t, cl, bad)[0]
	if !errors.Is(err, ErrRecordRejected) || !strings.Contains(err.Error(), "telemetry") || !strings.Contains(err.Error(), "site@"+d) {
		t.Fatalf("rejected record: %v", err)
	}

	// A topic without a plugin keeps kgo's placement.
	plain := []*kgo.Record{kv("plain", "k1", "v"), kv("plain", "k2", "v"), kv("plain", "", `{"site_id":"site-1"}`)}
	for i, err := range produce(t, cl, plain...) {
		if err != nil {
			t.Fatal(err)
		}
		if r := plain[i]; r.Key != nil && r.Partition != abi.KafkaPartition(r.Key, parts) {
			t.Fatalf("plain %q went to partition %d", r.Key, r.Partition)
		}
	}
	if b, ok := p.Binding("plain"); !ok || b.Plugin != "" || b.Err != nil {
		t.Fatalf("plain binding: %+v %v", b, ok)
	}

	// The records are where the producer says.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	consumer, err := kgo.NewClient(kgo.SeedBrokers(reg.addr), kgo.ConsumeTopics("telemetry"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	got := 0
	for got < len(recs) {
		fs := consumer.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			var i int
			fmt.Sscanf(string(r.Key), "dev-%d", &i)
			if want := recs[i].Partition; r.Partition != want {
				t.Errorf("%s stored in partition %d, produced to %d", r.Key, r.Partition, want)
			}
		})
	}
}

func TestPluginPartitionerOverQUIC(t *testing.T) {
	proxy := startProxy(t)
	admin, err := New(Brokers(proxy.addr), CAPEM(proxy.ca), KgoOpts(kgo.ProducerBatchMaxBytes(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	reg := &registry{addr: proxy.addr, adm: kadm.NewClient(admin), cl: admin}
	reg.createTopic(t, RegistryTopic, 1, map[string]string{"cleanup.policy": "compact", "max.message.bytes": "33554432"})
	d := reg.add(t, "site", plugintest.BuildGo(t, jsonfieldDir))
	const parts = 4
	reg.createTopic(t, "quic-sites", parts, map[string]string{ConfigPartitioner: "site@" + d})

	p := newPartitioner(t, PartitionerConfig{Topics: []string{"quic-sites"}})
	cl, err := New(Brokers(proxy.addr), CAPEM(proxy.ca), PluginPartitioner(p))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, kv("quic-sites", fmt.Sprintf("dev-%d", i), fmt.Sprintf(`{"site_id":"s%d"}`, i%3)))
	}
	for i, err := range produce(t, cl, recs...) {
		if want := abi.KafkaPartition(fmt.Appendf(nil, "s%d", i%3), parts); err != nil || recs[i].Partition != want {
			t.Fatalf("record %d: partition %d (%v), want %d", i, recs[i].Partition, err, want)
		}
	}
}

func TestPluginPartitionerMatchesKafka(t *testing.T) {
	// kgo's default has no OnNewBatch; the sticky one has, and kgo then
	// places a record twice when it starts a new batch.
	for name, def := range map[string]kgo.Partitioner{"uniform": nil, "sticky": kgo.StickyKeyPartitioner(nil)} {
		t.Run(name, func(t *testing.T) { testMatchesKafka(t, def) })
	}
}

func testMatchesKafka(t *testing.T, def kgo.Partitioner) {
	reg := newRegistry(t, true)
	d := reg.add(t, "murmur2", plugintest.BuildGo(t, murmur2Dir))
	const parts = 7
	reg.createTopic(t, "orders", parts, map[string]string{ConfigPartitioner: d}) // digest only
	p := newPartitioner(t, PartitionerConfig{Topics: []string{"orders"}, Default: def})
	cl := connect(t, reg, p)

	// Loaded by New.
	if b, ok := p.Binding("orders"); !ok || b.Err != nil || b.Digest != d || b.Name != "" {
		t.Fatalf("binding after New: %+v %v", b, ok)
	}
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, kv("orders", fmt.Sprintf("customer-%d", i*7919), "order"))
	}
	tomb := &kgo.Record{Topic: "orders", Key: []byte("gone")} // a null value
	recs = append(recs, tomb, &kgo.Record{Topic: "orders", Key: []byte{}, Value: []byte("empty key")},
		&kgo.Record{Topic: "orders", Key: []byte("h"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}, {Key: "", Value: nil}}})
	for i, err := range produce(t, cl, recs...) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if want := abi.KafkaPartition(recs[i].Key, parts); recs[i].Partition != want {
			t.Fatalf("record %d (%q) went to partition %d, Kafka's is %d", i, recs[i].Key, recs[i].Partition, want)
		}
	}
	// Keyless records are left to the default partitioner.
	var keyless []*kgo.Record
	for range 10 {
		keyless = append(keyless, kv("orders", "", "no key"))
	}
	for i, err := range produce(t, cl, keyless...) {
		if err != nil || keyless[i].Partition < 0 || keyless[i].Partition >= parts {
			t.Fatalf("keyless record %d: partition %d, %v", i, keyless[i].Partition, err)
		}
	}
	// One plugin call per record, also when kgo placed one twice.
	v, _ := p.topics.Load("orders")
	if c := v.(*topicState).cur.Load().pool.Status().Counters; c.Calls != uint64(len(recs)+len(keyless)) || c.Failures != 0 {
		t.Fatalf("%d records, %d calls, %d failures", len(recs)+len(keyless), c.Calls, c.Failures)
	}
}

func TestPluginPartitionerOnError(t *testing.T) {
	reg := newRegistry(t, true)
	d := reg.add(t, "bad", plugintest.BuildGo(t, badpluginDir))
	const parts = 5
	reg.createTopic(t, "strict", parts, map[string]string{ConfigPartitioner: "bad@" + d, ConfigPartitionerConfig: "error"})
	reg.createTopic(t, "lenient", parts, map[string]string{ConfigPartitioner: "bad@" + d, ConfigPartitionerConfig: "error", ConfigPartitionerOnError: "fallback", ConfigPartitionerTimeout: "200"})
	reg.createTopic(t, "badinit", parts, map[string]string{ConfigPartitioner: "bad@" + d, ConfigPartitionerConfig: "badinit"})
	p := newPartitioner(t, PartitionerConfig{RetryAfter: time.Hour})
	cl := connect(t, reg, p)

	err := produce(t, cl, kv("strict", "k", "v"))[0]
	var ce *sandbox.CallError
	if !errors.Is(err, ErrPartitionerFailed) || !errors.As(err, &ce) || !strings.Contains(err.Error(), "cannot place record") {
		t.Fatalf("strict: %v", err)
	}
	for i, err := range produce(t, cl, kv("lenient", "k1", "v"), kv("lenient", "k2", "v"), kv("lenient", "", "v")) {
		if err != nil {
			t.Fatalf("lenient record %d: %v", i, err)
		}
	}
	if b, _ := p.Binding("lenient"); b.OnError != "fallback" || b.Timeout != 200*time.Millisecond {
		t.Fatalf("lenient binding: %+v", b)
	}
	rs := []*kgo.Record{kv("lenient", "k1", "v"), kv("lenient", "k2", "v")}
	for i, err := range produce(t, cl, rs...) {
		if want := abi.KafkaPartition(rs[i].Key, parts); err != nil || rs[i].Partition != want {
			t.Fatalf("fallback placed %q in %d (%v), want %d", rs[i].Key, rs[i].Partition, err, want)
		}
	}
	// A configuration the plugin refuses makes the binding unusable.
	err = produce(t, cl, kv("badinit", "k", "v"))[0]
	if !errors.Is(err, ErrBindingUnavailable) || !errors.Is(err, sandbox.ErrConfig) {
		t.Fatalf("badinit: %v", err)
	}
	if b, ok := p.Binding("badinit"); !ok || !errors.Is(b.Err, sandbox.ErrConfig) {
		t.Fatalf("badinit binding: %+v", b)
	}
}

func TestPluginPartitionerBadBindings(t *testing.T) {
	reg := newRegistry(t, true)
	missing := sandbox.DigestOf([]byte("never registered")).String()
	reg.createTopic(t, "missing", 3, map[string]string{ConfigPartitioner: "ghost@" + missing})
	reg.createTopic(t, "garbled", 3, map[string]string{ConfigPartitioner: "murmur2"})

	_, err := New(Transport("tcp"), Brokers(reg.addr), PluginPartitioner(newPartitioner(t, PartitionerConfig{Topics: []string{"missing"}})))
	if !errors.Is(err, ErrBindingUnavailable) || !strings.Contains(err.Error(), "not in the plugin registry") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("New with a missing module: %v", err)
	}

	p := newPartitioner(t, PartitionerConfig{RetryAfter: time.Hour})
	cl := connect(t, reg, p)
	for _, topic := range []string{"missing", "garbled"} {
		err := produce(t, cl, kv(topic, "k", "v"))[0]
		if !errors.Is(err, ErrBindingUnavailable) || !strings.Contains(err.Error(), topic) {
			t.Fatalf("%s: %v", topic, err)
		}
	}
	if err := produce(t, cl, kv("garbled", "k", "v"))[0]; !strings.Contains(err.Error(), "want name@sha256") {
		t.Fatalf("garbled: %v", err)
	}

	// A topic that does not exist binds nothing.
	if err := p.Refresh(context.Background(), "nowhere"); err != nil {
		t.Fatal(err)
	}
	if b, ok := p.Binding("nowhere"); !ok || b.Plugin != "" || b.Err != nil {
		t.Fatalf("binding of a missing topic: %+v %v", b, ok)
	}
}

func TestPluginPartitionerRefresh(t *testing.T) {
	reg := newRegistry(t, true)
	m := reg.add(t, "murmur2", plugintest.BuildGo(t, murmur2Dir))
	j := reg.add(t, "site", plugintest.BuildGo(t, jsonfieldDir))
	const parts = 8
	reg.createTopic(t, "events", parts, map[string]string{ConfigPartitioner: "murmur2@" + m})
	refreshed := make(chan struct{}, 1)
	p := newPartitioner(t, PartitionerConfig{Topics: []string{"events"}, RefreshInterval: 20 * time.Millisecond})
	p.refreshed = func() {
		select {
		case refreshed <- struct{}{}:
		default:
		}
	}
	cl := connect(t, reg, p)

	// Find a record whose key and site hash to different partitions.
	var key, site string
	for i := 0; key == ""; i++ {
		k, s := fmt.Sprintf("key-%d", i), fmt.Sprintf("site-%d", i)
		if abi.KafkaPartition([]byte(k), parts) != abi.KafkaPartition([]byte(s), parts) {
			key, site = k, s
		}
	}
	value := fmt.Sprintf(`{"site_id":%q}`, site)
	placed := func() int32 {
		t.Helper()
		r := kv("events", key, value)
		if err := produce(t, cl, r)[0]; err != nil {
			t.Fatal(err)
		}
		return r.Partition
	}
	if got, want := placed(), abi.KafkaPartition([]byte(key), parts); got != want {
		t.Fatalf("murmur2 placed the record in %d, want %d", got, want)
	}

	// Replace the partitioner and pick it up with Refresh.
	bind := "site@" + j
	reg.setConfig(t, "events", ConfigPartitioner, &bind)
	ctx, cancel := context.WithTimeout(context.Background(), slow)
	defer cancel()
	if err := p.Refresh(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	if b, _ := p.Binding("events"); b.Digest != j {
		t.Fatalf("after Refresh: %+v", b)
	}
	if got, want := placed(), abi.KafkaPartition([]byte(site), parts); got != want {
		t.Fatalf("jsonfield placed the record in %d, want %d", got, want)
	}

	// Unbind it; the periodic refresh notices.
	reg.setConfig(t, "events", ConfigPartitioner, nil)
	deadline := time.After(slow)
	for {
		if b, _ := p.Binding("events"); b.Plugin == "" {
			break
		}
		select {
		case <-refreshed:
		case <-deadline:
			t.Fatal("the periodic refresh did not pick up the unbinding")
		}
	}
	if got, want := placed(), abi.KafkaPartition([]byte(key), parts); got != want {
		t.Fatalf("without a plugin the record went to %d, want %d", got, want)
	}
}

func TestPluginPartitionerDiskCache(t *testing.T) {
	dir := cacheDir(t)
	wasm := plugintest.BuildGo(t, murmur2Dir)
	reg := newRegistry(t, true)
	d := reg.add(t, "murmur2", wasm)
	reg.createTopic(t, "t", 3, map[string]string{ConfigPartitioner: d})
	cl := connect(t, reg, newPartitioner(t, PartitionerConfig{CacheDir: dir, Topics: []string{"t"}}))
	cl.Close()
	cached := filepath.Join(dir, "modules", strings.TrimPrefix(d, "sha256:")+".wasm")
	if _, err := os.Stat(cached); err != nil {
		t.Fatalf("module not cached: %v", err)
	}

	// A cluster without a registry: the module comes from the cache.
	other := newRegistry(t, false)
	other.createTopic(t, "t", 3, map[string]string{ConfigPartitioner: d})
	p := newPartitioner(t, PartitionerConfig{CacheDir: dir, Topics: []string{"t"}})
	cl = connect(t, other, p)
	r := kv("t", "k", "v")
	if err := produce(t, cl, r)[0]; err != nil || r.Partition != abi.KafkaPartition([]byte("k"), 3) {
		t.Fatalf("produce with a cached module: partition %d, %v", r.Partition, err)
	}

	// A corrupt cache entry is ignored: without a registry the load fails.
	if err := os.WriteFile(cached, []byte("not the module"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Transport("tcp"), Brokers(other.addr), PluginPartitioner(newPartitioner(t, PartitionerConfig{CacheDir: dir, Topics: []string{"t"}})))
	if !errors.Is(err, ErrBindingUnavailable) || !strings.Contains(err.Error(), RegistryTopic) {
		t.Fatalf("corrupt cache: %v", err)
	}
}

func TestRecordErrorIsOnlyThePartitioners(t *testing.T) {
	reg := newRegistry(t, true)
	missing := sandbox.DigestOf([]byte("absent")).String()
	reg.createTopic(t, "broken", 2, map[string]string{ConfigPartitioner: missing})
	reg.createTopic(t, "fine", 2, nil)
	cl := connect(t, reg, newPartitioner(t, PartitionerConfig{RetryAfter: time.Hour}))

	other := errors.New("some other failure")
	if err := RecordError(kv("fine", "k", "v"), other); err != other {
		t.Fatalf("RecordError of a record the partitioner did not fail: %v", err)
	}
	if err := RecordError(kv("fine", "k", "v"), nil); err != nil {
		t.Fatal(err)
	}
	// One context for both attempts: a record keeps the Context of its
	// first Produce.
	ctx, cancel := context.WithTimeout(context.Background(), slow)
	defer cancel()
	r := kv("broken", "k", "v")
	if err := RecordError(r, cl.ProduceSync(ctx, r).FirstErr()); !errors.Is(err, ErrBindingUnavailable) {
		t.Fatalf("broken: %v", err)
	}
	// The same record produced again elsewhere: the old cause is gone.
	r.Topic, r.Partition = "fine", 0
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := RecordError(r, other); err != other {
		t.Fatalf("stale cause: %v", err)
	}
}

func TestParseBinding(t *testing.T) {
	d := sandbox.DigestOf([]byte("m")).String()
	rc := func(kv ...string) kadm.ResourceConfig {
		r := kadm.ResourceConfig{Name: "t"}
		for i := 0; i < len(kv); i += 2 {
			v := kv[i+1]
			r.Configs = append(r.Configs, kadm.Config{Key: kv[i], Value: &v})
		}
		r.Configs = append(r.Configs, kadm.Config{Key: "retention.ms", Value: nil})
		return r
	}
	for _, tc := range []struct {
		name string
		rc   kadm.ResourceConfig
		want Binding
		err  string
	}{
		{name: "none", rc: rc(), want: Binding{OnError: "reject", Timeout: DefaultPartitionTimeout}},
		{name: "empty", rc: rc(ConfigPartitioner, " "), want: Binding{OnError: "reject", Timeout: DefaultPartitionTimeout}},
		{name: "named", rc: rc(ConfigPartitioner, "geo@"+d, ConfigPartitionerConfig, `{"field":"x"}`, ConfigPartitionerOnError, "fallback", ConfigPartitionerTimeout, "7", ConfigPartitionerTrusted, "true", ConfigPartitionerMemory, "16777216"),
			want: Binding{Plugin: "geo@" + d, Name: "geo", Digest: d, Config: []byte(`{"field":"x"}`), OnError: "fallback", Timeout: 7 * time.Millisecond, Trusted: true, Memory: 16 << 20}},
		{name: "digest", rc: rc(ConfigPartitioner, d, ConfigPartitionerOnError, "reject"), want: Binding{Plugin: d, Digest: d, Config: []byte{}, OnError: "reject", Timeout: DefaultPartitionTimeout}},
		{name: "bare name", rc: rc(ConfigPartitioner, "geo"), err: "want name@sha256"},
		{name: "bare hex", rc: rc(ConfigPartitioner, strings.TrimPrefix(d, "sha256:")),
			want: Binding{Plugin: strings.TrimPrefix(d, "sha256:"), Digest: d, Config: []byte{}, OnError: "reject", Timeout: DefaultPartitionTimeout}},
		{name: "short hex", rc: rc(ConfigPartitioner, "geo@sha256:4f2a"), err: "want name@sha256"},
		{name: "no name", rc: rc(ConfigPartitioner, "@"+d), err: "empty name"},
		{name: "on.error", rc: rc(ConfigPartitioner, d, ConfigPartitionerOnError, "bypass"), err: ConfigPartitionerOnError},
		{name: "timeout", rc: rc(ConfigPartitioner, d, ConfigPartitionerTimeout, "0"), err: ConfigPartitionerTimeout},
		{name: "trusted", rc: rc(ConfigPartitioner, d, ConfigPartitionerTrusted, "yes please"), err: ConfigPartitionerTrusted},
		{name: "memory", rc: rc(ConfigPartitioner, d, ConfigPartitionerMemory, "-1"), err: ConfigPartitionerMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBinding(tc.rc)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Topic, tc.want.Loaded = "t", got.Loaded
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// BenchmarkPluginPartition measures placing one record through the
// plugin, as kgo asks for it (RequiresConsistency, then PartitionByBackup).
func BenchmarkPluginPartition(b *testing.B) {
	for _, tc := range []struct{ name, path, value string }{
		{"go-murmur2", murmur2Dir, "v"},
		{"go-jsonfield", jsonfieldDir, `{"ts":1700000000000,"site_id":"berlin-3","temp":21.5}`},
		{"as-murmur2", "../../examples/plugins/testdata/as-murmur2.wasm", "v"}, // AssemblyScript, committed build
	} {
		for _, trusted := range []bool{false, true} {
			name := tc.name + "/guarded"
			if trusted {
				name = tc.name + "/trusted"
			}
			b.Run(name, func(b *testing.B) { benchPartition(b, tc.path, tc.value, trusted) })
		}
	}
}

func benchPartition(b *testing.B, path, value string, trusted bool) {
	if !strings.HasSuffix(path, ".wasm") {
		path = plugintest.BuildGo(b, path)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	p := NewPartitioner(PartitionerConfig{CacheDir: cacheDir(b)})
	defer hooks{p}.OnClientClosed(nil)
	e, err := p.engine()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m, err := e.Register(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := e.Pool(ctx, m.Digest, abi.KindPartitioner, nil, sandbox.PoolOptions{Trusted: trusted})
	if err != nil {
		b.Fatal(err)
	}
	p.state("bench").cur.Store(&binding{pool: pool, timeout: time.Second, info: Binding{Plugin: m.Digest.String()}})
	tp := p.ForTopic("bench").(kgo.TopicBackupPartitioner)
	recs := make([]*kgo.Record, 1024)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "bench", Key: fmt.Appendf(nil, "device-%06d", i), Value: []byte(value), Timestamp: time.Now()}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := recs[i%len(recs)]
		tp.RequiresConsistency(r)
		if got := tp.PartitionByBackup(r, 12, nil); got < 0 || got >= 12 {
			b.Fatalf("partition %d: %v", got, RecordError(r, errors.New("failed")))
		}
	}
}
