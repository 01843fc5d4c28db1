package telemetry

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves the handler once and parses the text exposition.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", rec.Code, rec.Body.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// find returns the metric of family name whose labels include want.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing; have %s", name, familyNames(fams))
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if match {
			return m
		}
	}
	t.Fatalf("metric %s has no series with labels %v", name, want)
	return nil
}

func familyNames(fams map[string]*dto.MetricFamily) string {
	var names []string
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// drive exercises every update method once or more, with known values.
func drive(m *Metrics) {
	m.ObserveRequest(Request{APIKey: 0, Transport: "tcp", ReqBytes: 1000, RespBytes: 60, Latency: 3 * time.Millisecond})
	m.ObserveRequest(Request{APIKey: 0, Transport: "quic", ReqBytes: 500, RespBytes: 40, Latency: 1 * time.Millisecond})
	m.ObserveRequest(Request{APIKey: 1, Transport: "tcp", ReqBytes: 80, RespBytes: 4096, Latency: 250 * time.Millisecond, Failed: true})
	m.ObserveRequest(Request{APIKey: 999, Transport: "tcp", ReqBytes: 10, Latency: time.Millisecond})
	m.Produced("orders", 10, 1500)
	m.Produced("orders", 5, 500)
	m.Fetched("orders", 15, 2000)
	m.ObserveFlush(64<<10, 3, 2*time.Millisecond)
	m.ObserveFlush(1<<20, 1, 4*time.Millisecond)
	m.ObserveSync(time.Millisecond, nil)
	m.ObserveSync(2*time.Millisecond, errors.New("fdatasync: input/output error"))
	m.ConnOpened("tcp")
	m.ConnOpened("tcp")
	m.ConnOpened("quic")
	m.ConnClosed("tcp")
	m.ObservePluginCall("sha256:0a1b2c3d", "filter", 40*time.Microsecond, "")
	m.ObservePluginCall("sha256:0a1b2c3d", "filter", 5*time.Millisecond, "timeout")
	m.GroupRebalance("classic")
	m.GroupRebalance("consumer")
	m.GroupRebalance("consumer")
	m.SetPartitionSource(func(yield func(PartitionStats) bool) {
		for p := range int32(2) {
			if !yield(PartitionStats{Topic: "orders", Partition: p, SizeBytes: 4096 * int64(p+1), Segments: 1 + int(p), LogStartOffset: 5, HighWatermark: 90 + int64(p), LogEndOffset: 100 + int64(p)}) {
				return
			}
		}
		yield(PartitionStats{Topic: "__consumer_offsets", Partition: 0, SizeBytes: 8192, Segments: 3, HighWatermark: 40, LogEndOffset: 40,
			Cleaner: &CleanerStats{DirtyBytes: 4096, DirtyRatio: 0.5, BytesCleaned: 1 << 20, RecordsRemoved: 900, Failures: 1}})
	})
	m.SetProduceRefused(true)
}

func TestScrapeAfterDrivingTheAPI(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "payload"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	m := New(Options{DataDir: dir, Version: "1.2.3", Commit: "abc"})
	drive(m)
	fams := scrape(t, m)

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"eddy_kafka_requests_total", map[string]string{"api": "Produce", "transport": "tcp"}, 1},
		{"eddy_kafka_requests_total", map[string]string{"api": "Produce", "transport": "quic"}, 1},
		{"eddy_kafka_requests_total", map[string]string{"api": "Fetch", "transport": "tcp"}, 1},
		{"eddy_kafka_requests_total", map[string]string{"api": "other", "transport": "tcp"}, 1},
		{"eddy_kafka_request_errors_total", map[string]string{"api": "Fetch"}, 1},
		{"eddy_kafka_request_errors_total", map[string]string{"api": "Produce"}, 0},
		{"eddy_kafka_request_bytes_total", map[string]string{"api": "Produce"}, 1500},
		{"eddy_kafka_response_bytes_total", map[string]string{"api": "Produce"}, 100},
		{"eddy_kafka_response_bytes_total", map[string]string{"api": "Fetch"}, 4096},
		{"eddy_produce_records_total", map[string]string{"topic": "orders"}, 15},
		{"eddy_produce_bytes_total", map[string]string{"topic": "orders"}, 2000},
		{"eddy_fetch_records_total", map[string]string{"topic": "orders"}, 15},
		{"eddy_fetch_bytes_total", map[string]string{"topic": "orders"}, 2000},
		{"eddy_fsync_errors_total", nil, 1},
		{"eddy_connections", map[string]string{"transport": "tcp"}, 1},
		{"eddy_connections", map[string]string{"transport": "quic"}, 1},
		{"eddy_connections_total", map[string]string{"transport": "tcp"}, 2},
		{"eddy_plugin_calls_total", map[string]string{"digest": "sha256:0a1b2c3d", "kind": "filter"}, 2},
		{"eddy_plugin_failures_total", map[string]string{"digest": "sha256:0a1b2c3d", "kind": "filter", "reason": "timeout"}, 1},
		{"eddy_group_rebalances_total", map[string]string{"protocol": "consumer"}, 2},
		{"eddy_partition_log_size_bytes", map[string]string{"topic": "orders", "partition": "1"}, 8192},
		{"eddy_partition_log_segments", map[string]string{"topic": "orders", "partition": "1"}, 2},
		{"eddy_partition_log_start_offset", map[string]string{"topic": "orders", "partition": "0"}, 5},
		{"eddy_partition_high_watermark", map[string]string{"topic": "orders", "partition": "1"}, 91},
		{"eddy_partition_log_end_offset", map[string]string{"topic": "orders", "partition": "1"}, 101},
		{"eddy_partitions", nil, 3},
		{"eddy_partition_cleaner_dirty_bytes", map[string]string{"topic": "__consumer_offsets", "partition": "0"}, 4096},
		{"eddy_partition_cleaner_records_removed_total", map[string]string{"topic": "__consumer_offsets", "partition": "0"}, 900},
		{"eddy_partition_cleaner_failures_total", map[string]string{"topic": "__consumer_offsets", "partition": "0"}, 1},
		{"eddy_disk_produce_refused", nil, 1},
		{"eddy_build_info", map[string]string{"version": "1.2.3", "commit": "abc"}, 1},
	}
	for _, c := range checks {
		if got := value(find(t, fams, c.name, c.labels)); !near(got, c.want) {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	hist := []struct {
		name   string
		labels map[string]string
		count  uint64
		sum    float64
	}{
		{"eddy_kafka_request_duration_seconds", map[string]string{"api": "Produce"}, 2, 0.004},
		{"eddy_kafka_request_duration_seconds", map[string]string{"api": "Fetch"}, 1, 0.25},
		{"eddy_flush_batch_bytes", nil, 2, 64<<10 + 1<<20},
		{"eddy_flush_batch_partitions", nil, 2, 4},
		{"eddy_flush_duration_seconds", nil, 2, 0.006},
		{"eddy_fsync_duration_seconds", nil, 2, 0.003},
		{"eddy_plugin_call_duration_seconds", map[string]string{"kind": "filter"}, 2, 0.00504},
	}
	for _, c := range hist {
		h := find(t, fams, c.name, c.labels).GetHistogram()
		if h == nil {
			t.Errorf("%s is not a histogram", c.name)
			continue
		}
		if h.GetSampleCount() != c.count || !near(h.GetSampleSum(), c.sum) {
			t.Errorf("%s%v: count %d sum %v, want %d and %v", c.name, c.labels, h.GetSampleCount(), h.GetSampleSum(), c.count, c.sum)
		}
	}

	// Runtime, process and host collectors.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if v := value(find(t, fams, name, nil)); !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	for _, name := range []string{"eddy_host_memory_total_bytes", "eddy_host_memory_available_bytes", "eddy_host_cpus"} {
		if v := value(find(t, fams, name, nil)); !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if v := value(find(t, fams, "eddy_host_cpu_seconds_total", map[string]string{"mode": "user"})); !(v > 0) {
		t.Errorf("eddy_host_cpu_seconds_total{mode=user} = %v, want > 0", v)
	}
	size := value(find(t, fams, "eddy_data_disk_size_bytes", nil))
	used := value(find(t, fams, "eddy_data_disk_used_bytes", nil))
	free := value(find(t, fams, "eddy_data_disk_free_bytes", nil))
	if !(size > 0 && used >= 1<<20 && free > 0 && used+free <= size*1.01) {
		t.Errorf("data disk: size %v used %v free %v: want size > 0, used >= the 1 MiB written, used+free <= size", size, used, free)
	}
}

func TestPartitionSourceRemoved(t *testing.T) {
	m := New(Options{NoHost: true, NoRuntime: true})
	drive(m)
	m.SetPartitionSource(nil)
	fams := scrape(t, m)
	for _, name := range []string{"eddy_partition_log_size_bytes", "eddy_partitions"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s still reported after the source was removed", name)
		}
	}
	if _, ok := fams["go_goroutines"]; ok {
		t.Error("NoRuntime still registered the Go collector")
	}
	if _, ok := fams["eddy_host_memory_total_bytes"]; ok {
		t.Error("NoHost still registered the host collector")
	}
}

func TestRequestsFromManyGoroutines(t *testing.T) {
	m := New(Options{NoHost: true, NoRuntime: true})
	const workers, each = 8, 500
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				m.ObserveRequest(Request{APIKey: int16(w % 3), Transport: "tcp", ReqBytes: 1, Latency: time.Microsecond})
			}
		}()
	}
	for range workers {
		<-done
	}
	fams := scrape(t, m)
	total := 0.0
	for _, s := range fams["eddy_kafka_requests_total"].Metric {
		total += value(s)
	}
	if total != workers*each {
		t.Fatalf("requests counted %v, want %d", total, workers*each)
	}
}

// fakeHost writes a /proc and /sys tree describing one SATA disk sda
// holding "/".
func fakeHost(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/self/mountinfo", "22 1 8:1 / / rw,noatime - ext4 /dev/sda1 rw\n")
	write("proc/self/cgroup", "0::/eddy.service\n")
	write("sys/fs/cgroup/eddy.service/memory.max", "536870912\n")
	write("proc/meminfo", "MemTotal:        2048000 kB\nMemFree:          512000 kB\nMemAvailable:    1024000 kB\nBuffers:           10000 kB\nCached:           400000 kB\nDirty:              1200 kB\nWriteback:            8 kB\n")
	write("proc/stat", "cpu  1000 20 300 5000 40 0 6 0 0 0\ncpu0 1000 20 300 5000 40 0 6 0 0 0\n")
	write("proc/cpuinfo", "processor\t: 0\n")
	write("proc/loadavg", "0.50 0.25 0.10 1/100 4242\n")
	write("proc/diskstats", "   8       0 sda 1200 3 96000 400 3400 50 272000 9000 2 8000 9400 0 0 0 0\n   8       1 sda1 1100 3 90000 390 3300 50 270000 8900 0 7900 9300 0 0 0 0\n")
	dev := "sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda"
	write(dev+"/queue/rotational", "0\n")
	write(dev+"/queue/scheduler", "[mq-deadline] none\n")
	write(dev+"/queue/nr_requests", "64\n")
	write(dev+"/size", "1953525168\n")
	write(dev+"/device/model", "Samsung SSD 870\n")
	write(dev+"/sda1/partition", "1\n")
	if err := os.MkdirAll(filepath.Join(root, "sys/dev/block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", filepath.Join(root, "sys/dev/block/8:1")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestHostCollectorOnAFakeHost(t *testing.T) {
	root := fakeHost(t)
	m := New(Options{DataDir: t.TempDir(), Root: root, NoRuntime: true})
	fams := scrape(t, m)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"eddy_host_memory_total_bytes", nil, 2048000 * 1024},
		{"eddy_host_memory_available_bytes", nil, 1024000 * 1024},
		{"eddy_host_memory_dirty_bytes", nil, 1200 * 1024},
		{"eddy_host_memory_limit_bytes", nil, 512 << 20},
		{"eddy_host_cpus", nil, 1},
		{"eddy_host_load_average", map[string]string{"period": "5m"}, 0.25},
		{"eddy_data_disk_info", map[string]string{"device": "sda", "kind": "ssd", "model": "Samsung SSD 870", "fs_type": "ext4"}, 1},
		{"eddy_data_disk_reads_total", map[string]string{"device": "sda"}, 1200},
		{"eddy_data_disk_writes_total", map[string]string{"device": "sda"}, 3400},
		{"eddy_data_disk_read_bytes_total", map[string]string{"device": "sda"}, 96000 * 512},
		{"eddy_data_disk_written_bytes_total", map[string]string{"device": "sda"}, 272000 * 512},
		{"eddy_data_disk_io_seconds_total", map[string]string{"device": "sda"}, 8},
		{"eddy_data_disk_ios_in_progress", map[string]string{"device": "sda"}, 2},
	}
	for _, c := range checks {
		if got := value(find(t, fams, c.name, c.labels)); !near(got, c.want) {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// USER_HZ is 100 on Linux: 1000 ticks of user time are 10 s.
	if got := value(find(t, fams, "eddy_host_cpu_seconds_total", map[string]string{"mode": "user"})); !near(got, 10) {
		t.Errorf("cpu user seconds = %v, want 10", got)
	}
}

func TestHostCollectorReportsUnresolvedDisk(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc/self"), 0o755); err != nil {
		t.Fatal(err)
	}
	// tmpfs has no block device.
	if err := os.WriteFile(filepath.Join(root, "proc/self/mountinfo"), []byte("22 1 0:40 / / rw - tmpfs tmpfs rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewHostCollector(HostOptions{DataDir: t.TempDir(), Root: root})
	if err == nil || !strings.Contains(err.Error(), "no block device") {
		t.Fatalf("NewHostCollector on tmpfs: err %v, want one naming the missing block device", err)
	}
}

func ExampleMetrics() {
	m := New(Options{NoHost: true, NoRuntime: true})
	m.ObserveRequest(Request{APIKey: 3, Transport: "quic", ReqBytes: 40, RespBytes: 300, Latency: 200 * time.Microsecond})
	mfs, _ := m.Registry().Gather()
	for _, f := range mfs {
		if f.GetName() == "eddy_kafka_requests_total" {
			fmt.Println(f.GetName(), f.Metric[0].GetLabel()[0].GetValue(), f.Metric[0].GetCounter().GetValue())
		}
	}
	// Output: eddy_kafka_requests_total Metadata 1
}
