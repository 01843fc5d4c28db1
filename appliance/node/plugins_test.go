package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/broker"
	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// badPlugin misbehaves as its configuration says (see its doc comment).
const badPlugin = "../../plugins/host/testdata/badplugin"

// addPlugin registers the module at path under name through the admin
// API and returns "name@digest".
func addPlugin(t testing.TB, n *Node, name, path string) string {
	t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, body := postModule(t, n, name, wasm)
	if code != http.StatusCreated {
		t.Fatalf("register %s: %d %s", name, code, body)
	}
	var info broker.PluginInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	return name + "@" + info.Digest
}

func postModule(t testing.TB, n *Node, name string, wasm []byte) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+n.AdminAddr()+"/v1/plugins?name="+name, "application/wasm", bytes.NewReader(wasm))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func pluginInfo(t testing.TB, n *Node, ref string) broker.PluginInfo {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/v1/plugins/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info broker.PluginInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info
}

func createTopic(t testing.TB, n *Node, name string, partitions int32, configs map[string]string) {
	t.Helper()
	cfgs := map[string]*string{}
	for k, v := range configs {
		cfgs[k] = &v
	}
	resp, err := kadm.NewClient(tcpClient(t, n)).CreateTopic(ctxT(t), partitions, 1, cfgs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v (%s)", name, err, resp.ErrMessage)
	}
}

// logValues reads partition 0 of topic from the log itself: the records'
// values and offsets, and how many batches hold no record.
func logValues(t testing.TB, n *Node, topic string) (values []string, offsets []int64, empty int) {
	t.Helper()
	l, ok := n.store.Log(storage.TopicPartition{Topic: topic, Partition: 0})
	if !ok {
		t.Fatalf("no log for %s-0", topic)
	}
	off := l.Offsets()
	for next := off.LogStart; next < off.HW; {
		res, err := l.Read(next, 1<<20, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) == 0 {
			break
		}
		for buf := res.Data; len(buf) > 0; {
			b, err := record.Check(buf)
			if err != nil {
				t.Fatal(err)
			}
			buf = buf[len(b):]
			next = b.LastOffset() + 1
			if b.RecordCount() == 0 {
				empty++
			}
			if err := b.EachRecord(0, func(r *record.Record) error {
				values = append(values, string(r.Value))
				offsets = append(offsets, r.Offset)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return values, offsets, empty
}

// TestProduceFilterEndToEnd: franz-go produces 100,000 records to a topic
// with the example filter; the log holds exactly the records it keeps,
// redacted, in order, at consecutive offsets (an idempotent batch the
// filter emptied leaves one offset behind, and nothing else does).
func TestProduceFilterEndToEnd(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	ref := addPlugin(t, n, "filter", plugintest.BuildGo(t, "../../examples/plugins/filter"))
	createTopic(t, n, "logs", 1, map[string]string{
		"plugin.produce.transforms": ref,
		"plugin.produce.config":     `{"drop_levels":["debug"],"redact":["password"]}`,
		// The deadline is the filter's output, not its speed: under the
		// race detector on two busy cores a 4,096-record call can take
		// more than the default 100 ms of wall time, and each timeout
		// (a retriable error) holds the partition back while franz-go
		// refreshes its metadata, up to 5 s. Timeouts have their own
		// tests (TestBadPluginsAreContained).
		"plugin.produce.timeout.ms": "10000",
	})
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.DefaultProduceTopic("logs"), kgo.ProducerLinger(5*time.Millisecond))
	const total = 100_000
	start := time.Now()
	var want []string
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for i := 0; i < total; i++ {
		level := "info"
		if i%4 == 0 {
			level = "debug"
		}
		rec := &kgo.Record{Value: fmt.Appendf(nil, `{"i":%d,"level":%q,"password":"secret-%d"}`, i, level, i)}
		if i%10 == 5 {
			rec.Headers = []kgo.RecordHeader{{Key: "eddy-drop", Value: []byte("1")}}
		}
		if level != "debug" && i%10 != 5 {
			want = append(want, fmt.Sprintf(`{"i":%d,"level":%q,"password":"***"}`, i, level))
		}
		wg.Add(1)
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				errOnce.Do(func() { firstErr = err })
			}
			wg.Done()
		})
	}
	wg.Wait()
	if firstErr != nil {
		// The plugin's counters and state say whether calls timed out or
		// the breaker opened, which is what a slow host turns into.
		info := pluginInfo(t, n, ref)
		t.Fatalf("%v (plugin %s: %+v, last error %q)", firstErr, info.State, info.Counters, info.LastError)
	}
	if info := pluginInfo(t, n, ref); testing.Verbose() {
		t.Logf("produced in %v; plugin %s: %+v", time.Since(start), info.State, info.Counters)
	}
	got, offsets, empty := logValues(t, n, "logs")
	if len(got) != len(want) {
		t.Fatalf("%d records stored, the filter keeps %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d is %s, want %s", i, got[i], want[i])
		}
	}
	for i := 1; i < len(offsets); i++ {
		if offsets[i] <= offsets[i-1] {
			t.Fatalf("offset %d after %d", offsets[i], offsets[i-1])
		}
	}
	end, err := kadm.NewClient(cl).ListEndOffsets(ctx, "logs")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := end.Lookup("logs", 0)
	if o.Offset != int64(len(want)+empty) {
		t.Fatalf("log end %d: %d records kept and %d emptied batches", o.Offset, len(want), empty)
	}
	// A consumer sees the same.
	seen := consumeAll(t, n, "logs", len(want))
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatal("the consumer's records differ from the filter's output")
	}
	if v, _ := sample(scrape(t, n), "eddy_plugin_calls_total", map[string]string{"kind": "transform"}); v == 0 {
		t.Fatal("no plugin call counted")
	}
}

// TestBadPluginsAreContained: modules the host refuses get a clear error
// at registration; a transform that panics, spins, exhausts memory or
// errors fails its topic's produces with a retriable error and appends
// nothing under reject, appends the batch unfiltered under bypass, and
// shows as degraded; the broker and other topics are unaffected.
func TestBadPluginsAreContained(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	// Refused at registration.
	unknownImport := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
		0x02, 0x0b, 0x01, 0x03, 'e', 'n', 'v', 0x03, 'f', 'o', 'o', 0x00, 0x00}
	for _, c := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"garbage", []byte("not webassembly at all"), "invalid"},
		{"unknown-import", unknownImport, "env.foo"},
		{"huge", append(append([]byte{}, unknownImport[:8]...), make([]byte, 17<<20)...), "bytes"},
	} {
		code, body := postModule(t, n, c.name, c.wasm)
		if code < 400 || !strings.Contains(body, c.want) {
			t.Errorf("registering %s: %d %s, want a refusal naming %q", c.name, code, body, c.want)
		}
	}

	ref := addPlugin(t, n, "badplugin", plugintest.BuildGo(t, badPlugin))
	createTopic(t, n, "good", 1, nil)
	for _, mode := range []string{"panic", "loop", "oom", "error"} {
		// Only the loop should meet its deadline; the others get room to
		// fail as themselves (a trap for oom) on a slow, loaded machine.
		timeout := "10000"
		if mode == "loop" {
			timeout = "200"
		}
		for _, policy := range []string{"reject", "bypass"} {
			createTopic(t, n, mode+"-"+policy, 1, map[string]string{
				"plugin.produce.transforms":       ref,
				"plugin.produce.config":           mode,
				"plugin.produce.on.error":         policy,
				"plugin.produce.timeout.ms":       timeout,
				"plugin.produce.memory.max.bytes": "16777216",
			})
		}
	}
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.RecordRetries(0), kgo.RecordDeliveryTimeout(30*time.Second))
	for _, mode := range []string{"panic", "loop", "oom", "error"} {
		topic := mode + "-reject"
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
		if !errors.Is(err, kerr.KafkaStorageError) {
			t.Errorf("%s: produce under reject: %v, want a retriable KAFKA_STORAGE_ERROR", topic, err)
		}
		if vals, _, _ := logValues(t, n, topic); len(vals) != 0 {
			t.Errorf("%s: %d records appended under reject", topic, len(vals))
		}
		topic = mode + "-bypass"
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("unfiltered")}).FirstErr(); err != nil {
			t.Errorf("%s: produce under bypass: %v", topic, err)
		}
		if vals, _, _ := logValues(t, n, topic); len(vals) != 1 || vals[0] != "unfiltered" {
			t.Errorf("%s: stored %q under bypass, want the batch unfiltered", topic, vals)
		}
		// The other topic flows all along.
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "good", Value: []byte(mode)}).FirstErr(); err != nil {
			t.Fatalf("produce to an unrelated topic: %v", err)
		}
	}
	// Enough failures open the circuit: degraded, in the API and metrics.
	for i := 0; i < 5; i++ {
		cl.ProduceSync(ctx, &kgo.Record{Topic: "error-reject", Value: []byte("x")})
	}
	info := pluginInfo(t, n, ref[strings.IndexByte(ref, '@')+1:])
	if info.State != "degraded" || info.Counters.Failures == 0 || info.Counters.Timeouts == 0 || info.Counters.Traps == 0 {
		t.Fatalf("after failures the plugin shows %s with counters %+v", info.State, info.Counters)
	}
	fams := scrape(t, n)
	for _, reason := range []string{"trap", "timeout", "status"} {
		if v, _ := sample(fams, "eddy_plugin_failures_total", map[string]string{"reason": reason}); v == 0 {
			t.Errorf("no eddy_plugin_failures_total{reason=%q}", reason)
		}
	}
	if vals, _, _ := logValues(t, n, "good"); len(vals) != 4 {
		t.Fatalf("the unrelated topic holds %d records, want 4", len(vals))
	}
}

// TestHotReplaceTransform swaps a topic's transform while an idempotent
// producer runs: every record is stored exactly once, by the filter that
// was bound when its batch arrived, and no record is lost or repeated.
func TestHotReplaceTransform(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	filter := addPlugin(t, n, "filter", plugintest.BuildGo(t, "../../examples/plugins/filter"))
	upper := addPlugin(t, n, "badplugin", plugintest.BuildGo(t, badPlugin))
	createTopic(t, n, "swap", 1, map[string]string{"plugin.produce.transforms": filter})
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.DefaultProduceTopic("swap"), kgo.ProducerLinger(time.Millisecond))
	adm := kadm.NewClient(cl)
	// The producer runs until 3,000 records after the swap completed.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	acked, stopAt := 0, -1
	total := 0
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; ; i++ {
			mu.Lock()
			stop := stopAt >= 0 && i >= stopAt
			mu.Unlock()
			if stop {
				total = i
				return
			}
			level := "info"
			if i%2 == 0 {
				level = "debug"
			}
			wg.Add(1)
			cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, `{"i":%d,"level":"%s"}`, i, level)}, func(_ *kgo.Record, err error) {
				mu.Lock()
				acked++
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				wg.Done()
			})
			if i%100 == 99 {
				cl.Flush(ctx) // keep the producer paced with the broker
			}
		}
	}()
	waitFor(t, "5,000 acknowledged records", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked >= 5000
	})
	upperCfg, mode := upper, "upper"
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "plugin.produce.transforms", Value: &upperCfg},
		{Op: kadm.SetConfig, Name: "plugin.produce.config", Value: &mode},
	}, "swap")
	if err == nil {
		err = rs[0].Err
	}
	if err != nil {
		t.Fatalf("swap the transform: %v", err)
	}
	mu.Lock()
	stopAt = acked + 3000
	mu.Unlock()
	<-produced
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	vals, _, _ := logValues(t, n, "swap")
	seen := map[int]int{}
	next, switched := 0, false
	for _, v := range vals {
		var r struct {
			I int `json:"i"` // matches "I" too: encoding/json is case-insensitive
		}
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatalf("stored %q: %v", v, err)
		}
		i, upperCase := r.I, strings.Contains(v, `"LEVEL"`)
		if i < next {
			t.Fatalf("record %d stored again or out of order after record %d", i, next-1)
		}
		// The records skipped since the last stored one were dropped by
		// the old filter: debug records, before the swap.
		for j := next; j < i; j++ {
			if j%2 != 0 || switched {
				t.Fatalf("record %d is missing (the swap happened: %v)", j, switched)
			}
		}
		if switched && !upperCase {
			t.Fatalf("record %d went through the old filter after the new one ran", i)
		}
		switched = switched || upperCase
		seen[i]++
		next = i + 1
	}
	if !switched {
		t.Fatal("the new transform never ran")
	}
	if next != total {
		t.Fatalf("the last stored record is %d, want %d", next-1, total-1)
	}
}

// TestCleanupPluginEndToEnd: a topic with cleanup.policy=plugin and the
// example cleanup policy loses its old debug records and keeps the rest;
// a cleanup plugin that fails deletes nothing and its failures show.
func TestCleanupPluginEndToEnd(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Set("log.cleaner_interval", "50ms", config.Flag)
	n := startNode(t, cfg)
	ref := addPlugin(t, n, "cleanup", plugintest.BuildGo(t, "../../examples/plugins/cleanup"))
	bad := addPlugin(t, n, "badplugin", plugintest.BuildGo(t, badPlugin))
	common := map[string]string{"cleanup.policy": "plugin", "segment.bytes": "2048", "segment.ms": "100"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	createTopic(t, n, "aged", 1, with(map[string]string{"plugin.cleanup": ref, "plugin.cleanup.config": `{"max_age_ms": 60000}`}))
	createTopic(t, n, "broken", 1, with(map[string]string{"plugin.cleanup": bad, "plugin.cleanup.config": "panic"}))
	ctx := ctxT(t)
	cl := tcpClient(t, n)
	old := time.Now().Add(-2 * time.Hour)
	var want []string
	for i := 0; i < 200; i++ {
		level := "info"
		if i%3 == 0 {
			level = "debug"
		}
		v := fmt.Sprintf(`{"i":%d,"level":%q}`, i, level)
		for _, topic := range []string{"aged", "broken"} {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v), Timestamp: old}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if level != "debug" {
			want = append(want, v)
		}
	}
	waitFor(t, "the cleanup plugin to drop the old debug records", 60*time.Second, func() bool {
		// The active segment rolls once idle for segment.ms, so every
		// old debug record goes.
		vals, _, _ := logValues(t, n, "aged")
		return len(vals) == len(want)
	})
	vals, _, _ := logValues(t, n, "aged")
	kept := map[string]bool{}
	for _, v := range vals {
		kept[v] = true
	}
	for _, v := range want {
		if !kept[v] {
			t.Fatalf("the cleanup policy removed %s, which is not debug", v)
		}
	}
	// The failing policy: failures recorded, nothing deleted.
	var failures uint64
	waitFor(t, "the broken policy to fail", 30*time.Second, func() bool {
		for _, p := range n.Broker().Partitions("broken") {
			if p.Cleaner != nil {
				failures = p.Cleaner.Failures
			}
		}
		return failures > 0
	})
	if vals, _, _ := logValues(t, n, "broken"); len(vals) != 200 {
		t.Fatalf("a failing cleanup plugin left %d of 200 records", len(vals))
	}
	if info := pluginInfo(t, n, bad[strings.IndexByte(bad, '@')+1:]); info.Counters.Failures == 0 || info.LastError == "" {
		t.Fatalf("the cleanup panic is not counted: %+v", info)
	}
}
