package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// scrape reads /metrics and returns the families.
func scrape(t *testing.T, n *Node) map[string]*metricFamily {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

type metricFamily = dto.MetricFamily

// sample returns the value of the series of name whose labels include
// want (summed over the others); counters, gauges and histogram counts.
func sample(fams map[string]*metricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	total, found := 0.0, false
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total, found
}

// TestMetricsAfterTraffic produces and consumes over TCP, then finds the
// broker, storage and host metrics on /metrics with the values the
// traffic implies.
func TestMetricsAfterTraffic(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.DefaultProduceTopic("m"), kgo.AllowAutoTopicCreation())
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "m"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "value-%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := tcpClient(t, n, kgo.ConsumeTopics("m"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for got := 0; got < 100; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	fams := scrape(t, n)
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
		max    float64
	}{
		{"eddy_kafka_requests_total", map[string]string{"api": "Produce", "transport": "tcp"}, 1, 100},
		{"eddy_kafka_requests_total", map[string]string{"api": "Fetch", "transport": "tcp"}, 1, 1e6},
		{"eddy_kafka_request_duration_seconds", map[string]string{"api": "Produce"}, 1, 100},
		{"eddy_produce_records_total", map[string]string{"topic": "m"}, 100, 100},
		{"eddy_fetch_records_total", map[string]string{"topic": "m"}, 100, 200},
		{"eddy_flush_duration_seconds", nil, 1, 1e6},
		{"eddy_fsync_duration_seconds", nil, 1, 1e6},
		{"eddy_fsync_errors_total", nil, 0, 0},
		{"eddy_connections", map[string]string{"transport": "tcp"}, 2, 10},
		{"eddy_partition_high_watermark", map[string]string{"topic": "m", "partition": "0"}, 100, 100},
		{"eddy_partition_log_size_bytes", map[string]string{"topic": "m", "partition": "0"}, 100 * 7, 1 << 20},
		{"eddy_disk_produce_refused", nil, 0, 0},
		{"eddy_host_memory_total_bytes", nil, 1 << 20, 1 << 50},
		{"eddy_host_cpus", nil, 1, 4096},
		{"eddy_data_disk_used_bytes", nil, 1, 1 << 60},
		{"eddy_build_info", map[string]string{"version": "test"}, 1, 1},
	}
	for _, c := range checks {
		v, ok := sample(fams, c.name, c.labels)
		if !ok || v < c.min || v > c.max {
			t.Errorf("%s%v = %v (present %v), want %v..%v", c.name, c.labels, v, ok, c.min, c.max)
		}
	}
}

// freeAddr returns a loopback TCP address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// prefill writes records to a topic of a node in dir and stops it.
func prefill(t *testing.T, dir, topic string, records int) {
	t.Helper()
	n := startNode(t, testConfig(t, dir))
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.DefaultProduceTopic(topic))
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < records; i++ {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "record %d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	stopNode(t, n)
}

func getStatus(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyzDuringRecovery holds storage recovery on a file open: /readyz
// answers 503 with the reason meanwhile, and 200 once the node serves.
func TestReadyzDuringRecovery(t *testing.T) {
	dir := t.TempDir()
	prefill(t, dir, "r", 50)
	fsys := vfs.NewFaulty(vfs.OS)
	release := make(chan struct{})
	var held atomic.Bool
	fsys.SetInjector(func(op vfs.Op) error {
		if op.Kind == vfs.OpOpen && strings.HasSuffix(op.Path, ".log") && held.CompareAndSwap(false, true) {
			<-release
		}
		return nil
	})
	cfg := testConfig(t, dir)
	admin := freeAddr(t)
	cfg.Set("admin.addr", admin, config.Flag)
	started := make(chan *Node, 1)
	go func() {
		n, err := Start(context.Background(), cfg, Options{Version: "test", FS: fsys})
		if err != nil {
			t.Error(err)
		}
		started <- n
	}()
	url := "http://" + admin + "/readyz"
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := getStatus(url)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "recovering") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz during recovery: %d %q", code, body)
		}
		<-time.After(10 * time.Millisecond)
	}
	close(release)
	n := <-started
	if n == nil {
		t.FailNow()
	}
	t.Cleanup(func() { stopNode(t, n) })
	if code, body := getStatus(url); code != 200 {
		t.Fatalf("readyz after recovery: %d %q", code, body)
	}
}

// notifySocket listens where NOTIFY_SOCKET points and collects messages.
type notifySocket struct {
	mu   sync.Mutex
	msgs []string
	conn *net.UnixConn
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{conn: conn}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:k]))
			s.mu.Unlock()
		}
	}()
	t.Setenv("NOTIFY_SOCKET", path)
	return s
}

func (s *notifySocket) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func (s *notifySocket) count(prefix string) int {
	n := 0
	for _, m := range s.all() {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// TestWatchdogStopsWhenTheFlushStalls: with WATCHDOG_USEC set, pings flow
// while the node makes progress, stop while an fdatasync hangs, and
// resume after it returns.
func TestWatchdogStopsWhenTheFlushStalls(t *testing.T) {
	sock := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "600000")
	t.Setenv("WATCHDOG_PID", "")
	fsys := vfs.NewFaulty(vfs.OS)
	var stall atomic.Bool
	release := make(chan struct{})
	fsys.SetInjector(func(op vfs.Op) error {
		if op.Kind == vfs.OpSync && stall.Load() && strings.HasSuffix(op.Path, ".log") {
			<-release
		}
		return nil
	})
	notify := NewNotifier(nil)
	n, err := Start(context.Background(), testConfig(t, t.TempDir()), Options{Version: "test", FS: fsys, Status: notify.Status})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopNode(t, n) })
	notify.Ready("ready", n.Live)
	defer notify.Stopping("stopping")
	waitFor(t, "watchdog pings", 10*time.Second, func() bool { return sock.count("WATCHDOG=1") >= 2 })
	msgs := sock.all()
	ready := -1
	for i, m := range msgs {
		if strings.HasPrefix(m, "READY=1") {
			ready = i
		}
	}
	if ready < 1 || !strings.Contains(strings.Join(msgs[:ready], "\n"), "STATUS=recovering storage") {
		t.Fatalf("READY=1 without the start-up STATUS lines before it: %q", msgs)
	}

	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.DefaultProduceTopic("w"), kgo.AllowAutoTopicCreation())
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "w"); err != nil {
		t.Fatal(err)
	}
	stall.Store(true)
	produced := make(chan error, 1)
	cl.Produce(ctx, &kgo.Record{Value: []byte("stuck")}, func(_ *kgo.Record, err error) { produced <- err })
	waitFor(t, "the stuck status", 10*time.Second, func() bool { return sock.count("STATUS=stuck") > 0 })
	// No ping for well over a watchdog interval.
	before := sock.count("WATCHDOG=1")
	<-time.After(1500 * time.Millisecond)
	if after := sock.count("WATCHDOG=1"); after != before {
		t.Fatalf("%d watchdog pings while the flush was stuck", after-before)
	}
	stall.Store(false)
	close(release)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pings to resume", 10*time.Second, func() bool { return sock.count("WATCHDOG=1") > before })
}

// TestProfilingUploadsWithTags points [profiling] at a stand-in ingest
// endpoint: profiles arrive with the site, version and node tags.
func TestProfilingUploadsWithTags(t *testing.T) {
	t.Setenv("PYROSCOPE_ADHOC_SERVER_ADDRESS", "")
	os.Unsetenv("PYROSCOPE_ADHOC_SERVER_ADDRESS")
	names := make(chan string, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/ingest" {
			select {
			case names <- r.URL.Query().Get("name"):
			default:
			}
		}
	}))
	defer srv.Close()
	cfg := testConfig(t, t.TempDir())
	for k, v := range map[string]string{
		"profiling.server": srv.URL, "profiling.site": "edge-7", "profiling.upload_rate": "1s",
		"profiling.types": "cpu,inuse_space", "profiling.tags": "rack=r3", "node.id": "4",
	} {
		if err := cfg.Set(k, v, config.Flag); err != nil {
			t.Fatal(err)
		}
	}
	startNode(t, cfg)
	select {
	case name := <-names:
		for _, want := range []string{"eddy{", "site=edge-7", "version=test", "node=4", "rack=r3"} {
			if !strings.Contains(name, want) {
				t.Fatalf("profile %q lacks %q", name, want)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no profile uploaded")
	}
}

// TestDiskFullInjected: writes failing with ENOSPC fail produces with
// KAFKA_STORAGE_ERROR and damage nothing; once space returns, producing
// resumes and every acknowledged record reads back.
func TestDiskFullInjected(t *testing.T) {
	fsys := vfs.NewFaulty(vfs.OS)
	var full atomic.Bool
	fsys.SetInjector(func(op vfs.Op) error {
		if full.Load() && op.Kind == vfs.OpWrite && strings.HasSuffix(op.Path, ".log") {
			return errNoSpace
		}
		return nil
	})
	n, err := Start(context.Background(), testConfig(t, t.TempDir()), Options{Version: "test", FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopNode(t, n) })
	checkProduceThroughFullDisk(t, n, func(on bool) { full.Store(on) })
}

var errNoSpace = fmt.Errorf("injected: %w", syscall.ENOSPC)

// checkProduceThroughFullDisk produces, fills the disk (setFull(true)),
// expects produces to fail with a storage error while fetches go on, frees it and expects produces to resume; then every
// acknowledged record reads back in order.
func checkProduceThroughFullDisk(t *testing.T, n *Node, setFull func(bool)) {
	t.Helper()
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.DefaultProduceTopic("full"), kgo.RecordRetries(0), kgo.ProducerLinger(0))
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "full"); err != nil {
		t.Fatal(err)
	}
	var acked []string
	produce := func(v string) error {
		err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr()
		if err == nil {
			acked = append(acked, v)
		}
		return err
	}
	for i := 0; i < 20; i++ {
		if err := produce(fmt.Sprint("before-", i)); err != nil {
			t.Fatal(err)
		}
	}
	setFull(true)
	err := produce("while-full")
	if !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("produce on a full disk: %v, want KAFKA_STORAGE_ERROR", err)
	}
	// Fetches keep working.
	if got := consumeAll(t, n, "full", len(acked)); strings.Join(got, ",") != strings.Join(acked, ",") {
		t.Fatalf("fetch on a full disk read %v, want %v", got, acked)
	}
	setFull(false)
	deadline := time.Now().Add(30 * time.Second)
	for produce("after") != nil {
		if time.Now().After(deadline) {
			t.Fatal("producing did not resume after space returned")
		}
		<-time.After(50 * time.Millisecond)
	}
	if got := consumeAll(t, n, "full", len(acked)); strings.Join(got, ",") != strings.Join(acked, ",") {
		t.Fatalf("after the disk-full episode read %v, want %v", got, acked)
	}
}

// consumeAll reads count records of partition 0 of topic from the start.
func consumeAll(t *testing.T, n *Node, topic string, count int) []string {
	t.Helper()
	ctx := ctxT(t)
	c := tcpClient(t, n, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	defer c.Close()
	var out []string
	for len(out) < count {
		fs := c.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	return out
}
