package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Namespace prefixes every Eddy metric.
const Namespace = "eddy"

// Options configures New.
type Options struct {
	// DataDir is the data directory whose filesystem and block device the
	// host collector reports; empty leaves out the disk metrics.
	DataDir string
	// Root is prepended to /proc and /sys paths the host collector reads
	// (tests); empty means "/".
	Root string
	// NoHost leaves out the host collector.
	NoHost bool
	// NoRuntime leaves out the Go runtime and process collectors.
	NoRuntime bool
	// Version and Commit label eddy_build_info.
	Version, Commit string
	// Logger receives errors met while serving /metrics; nil discards.
	Logger *slog.Logger
}

// Metrics is the node's registry and the handles the broker updates.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	requests     *prometheus.CounterVec
	requestErrs  *prometheus.CounterVec
	requestBytes *prometheus.CounterVec
	respBytes    *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	apis         [maxAPIKey + 1]atomic.Pointer[apiSeries]

	produceRecords *prometheus.CounterVec
	produceBytes   *prometheus.CounterVec
	fetchRecords   *prometheus.CounterVec
	fetchBytes     *prometheus.CounterVec

	flushBytes      prometheus.Histogram
	flushPartitions prometheus.Histogram
	flushDuration   prometheus.Histogram
	syncDuration    prometheus.Histogram
	syncErrors      prometheus.Counter

	conns     *prometheus.GaugeVec
	refused   *prometheus.CounterVec
	connsOpen *prometheus.CounterVec

	pluginCalls    *prometheus.CounterVec
	pluginFailures *prometheus.CounterVec
	pluginDuration *prometheus.HistogramVec

	rebalances *prometheus.CounterVec

	produceRefused prometheus.Gauge

	partitions *partitionCollector
	host       *HostCollector
	ioProfile  *ioProfileCollector
}

// maxAPIKey bounds the per-API cache; higher keys share one "other" slot.
const maxAPIKey = 127

// apiSeries are one API's resolved series.
type apiSeries struct {
	errs       prometheus.Counter
	reqBytes   prometheus.Counter
	respBytes  prometheus.Counter
	latency    prometheus.Observer
	transports sync.Map // transport -> prometheus.Counter
}

// Histogram buckets.
var (
	// latencyBuckets span 50 us to ~26 s: produce acks after an fsync on an
	// SD card and long-polled fetches both fit.
	latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 20)
	// syncBuckets span 20 us to ~5 s.
	syncBuckets = prometheus.ExponentialBuckets(20e-6, 2, 18)
	// batchBuckets span 512 B to 64 MiB.
	batchBuckets = prometheus.ExponentialBuckets(512, 2, 18)
	// countBuckets span 1 to 4096 partitions per flush.
	countBuckets = prometheus.ExponentialBuckets(1, 2, 13)
	// pluginBuckets span 5 us to ~5 s.
	pluginBuckets = prometheus.ExponentialBuckets(5e-6, 2, 20)
)

// New builds a registry with every Eddy metric, the host collector (unless
// NoHost) and the Go runtime and process collectors (unless NoRuntime).
// The host collector's disk metrics need DataDir; a data directory whose
// device cannot be resolved is reported through Logger and leaves out the
// device's I/O counters only.
func New(opts Options) *Metrics {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: log}
	f := factory{m.reg}

	m.requests = f.counterVec("kafka_requests_total", "Kafka requests handled, by API and transport.", "api", "transport")
	m.requestErrs = f.counterVec("kafka_request_errors_total", "Kafka requests whose handling failed (connection-level failures, not error codes in responses), by API.", "api")
	m.requestBytes = f.counterVec("kafka_request_bytes_total", "Bytes of Kafka request frames, by API.", "api")
	m.respBytes = f.counterVec("kafka_response_bytes_total", "Bytes of Kafka response frames, by API.", "api")
	m.latency = f.histogramVec("kafka_request_duration_seconds", "Time from a request's arrival to its response being written, by API.", latencyBuckets, "api")

	m.produceRecords = f.counterVec("produce_records_total", "Records appended by produce requests, by topic.", "topic")
	m.produceBytes = f.counterVec("produce_bytes_total", "Record batch bytes appended by produce requests, by topic.", "topic")
	m.fetchRecords = f.counterVec("fetch_records_total", "Records served by fetch requests, by topic.", "topic")
	m.fetchBytes = f.counterVec("fetch_bytes_total", "Record batch bytes served by fetch requests, by topic.", "topic")

	m.flushBytes = f.histogram("flush_batch_bytes", "Bytes made durable by one group-commit flush.", batchBuckets)
	m.flushPartitions = f.histogram("flush_batch_partitions", "Partition files synced by one group-commit flush.", countBuckets)
	m.flushDuration = f.histogram("flush_duration_seconds", "Duration of one group-commit flush (all its syncs).", syncBuckets)
	m.syncDuration = f.histogram("fsync_duration_seconds", "Duration of one fdatasync of a partition file.", syncBuckets)
	m.syncErrors = f.counter("fsync_errors_total", "fdatasync calls that failed.")

	m.conns = f.gaugeVec("connections", "Open client and peer connections, by transport.", "transport")
	m.connsOpen = f.counterVec("connections_total", "Connections accepted, by transport.", "transport")
	m.refused = f.counterVec("connections_refused_total", "Connections closed at once for a connection limit, by transport and limit.", "transport", "limit")

	m.pluginCalls = f.counterVec("plugin_calls_total", "Plugin calls (one per record batch), by module digest and kind.", "digest", "kind")
	m.pluginFailures = f.counterVec("plugin_failures_total", "Plugin calls that failed, by module digest, kind and reason (trap, timeout, memory, abi, open-circuit, ...).", "digest", "kind", "reason")
	m.pluginDuration = f.histogramVec("plugin_call_duration_seconds", "Duration of one plugin call, by kind.", pluginBuckets, "kind")

	m.rebalances = f.counterVec("group_rebalances_total", "Consumer group rebalances started, by protocol (classic, consumer).", "protocol")

	m.produceRefused = f.gauge("disk_produce_refused", "1 while produces are refused because the data disk is above disk.hard_watermark (or below disk.min_free_bytes), 0 otherwise.")

	build := f.gaugeVec("build_info", "Always 1; labels name the running build.", "version", "commit", "goversion")
	build.WithLabelValues(orUnknown(opts.Version), orUnknown(opts.Commit), runtime.Version()).Set(1)

	m.partitions = newPartitionCollector()
	m.reg.MustRegister(m.partitions)
	m.ioProfile = newIOProfileCollector()
	m.reg.MustRegister(m.ioProfile)
	if !opts.NoHost {
		h, err := NewHostCollector(HostOptions{DataDir: opts.DataDir, Root: opts.Root})
		if err != nil {
			log.Warn("host metrics: data disk not resolved", "data_dir", opts.DataDir, "err", err)
		}
		m.host = h
		m.reg.MustRegister(h)
	}
	if !opts.NoRuntime {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the registry, to add collectors or gather directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text and OpenMetrics
// formats. A collector that fails is reported in the response and to the
// logger; the other metrics are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{m.log},
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg,
		EnableOpenMetrics: true,
		Timeout:           10 * time.Second,
	})
}

// Request is one handled Kafka request.
type Request struct {
	APIKey    int16
	Transport string // "tcp" or "quic"
	ReqBytes  int    // the request frame, size prefix included
	RespBytes int    // the response frame; 0 for acks=0 produce
	Latency   time.Duration
	Failed    bool // handling failed (the connection is closed), not a Kafka error code
}

// ObserveRequest records one handled request.
func (m *Metrics) ObserveRequest(r Request) {
	s := m.api(r.APIKey)
	s.counterFor(m, r.APIKey, r.Transport).Inc()
	s.reqBytes.Add(float64(r.ReqBytes))
	s.respBytes.Add(float64(r.RespBytes))
	s.latency.Observe(r.Latency.Seconds())
	if r.Failed {
		s.errs.Inc()
	}
}

// api returns the resolved series of an API key.
func (m *Metrics) api(key int16) *apiSeries {
	idx := int(key)
	if idx < 0 || idx > maxAPIKey {
		idx = maxAPIKey
	}
	if s := m.apis[idx].Load(); s != nil {
		return s
	}
	name := apiName(key)
	if idx == maxAPIKey {
		name = "other"
	}
	s := &apiSeries{
		errs:      m.requestErrs.WithLabelValues(name),
		reqBytes:  m.requestBytes.WithLabelValues(name),
		respBytes: m.respBytes.WithLabelValues(name),
		latency:   m.latency.WithLabelValues(name),
	}
	if m.apis[idx].CompareAndSwap(nil, s) {
		return s
	}
	return m.apis[idx].Load()
}

// counterFor returns the request counter of this API and transport.
func (s *apiSeries) counterFor(m *Metrics, key int16, transport string) prometheus.Counter {
	if c, ok := s.transports.Load(transport); ok {
		return c.(prometheus.Counter)
	}
	name := apiName(key)
	if int(key) < 0 || int(key) > maxAPIKey {
		name = "other"
	}
	c, _ := s.transports.LoadOrStore(transport, m.requests.WithLabelValues(name, orUnknown(transport)))
	return c.(prometheus.Counter)
}

// apiName is the Kafka name of an API key ("Produce"), or its number.
func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "" && n != "Unknown" {
		return n
	}
	return strconv.Itoa(int(key))
}

// Produced records records and bytes appended to topic by a produce
// request.
func (m *Metrics) Produced(topic string, records, bytes int64) {
	m.produceRecords.WithLabelValues(topic).Add(float64(records))
	m.produceBytes.WithLabelValues(topic).Add(float64(bytes))
}

// Fetched records records and bytes of topic served by a fetch request.
func (m *Metrics) Fetched(topic string, records, bytes int64) {
	m.fetchRecords.WithLabelValues(topic).Add(float64(records))
	m.fetchBytes.WithLabelValues(topic).Add(float64(bytes))
}

// ObserveFlush records one group-commit flush: the bytes it made durable,
// the partition files it synced and how long it took.
func (m *Metrics) ObserveFlush(bytes int64, partitions int, d time.Duration) {
	m.flushBytes.Observe(float64(bytes))
	m.flushPartitions.Observe(float64(partitions))
	m.flushDuration.Observe(d.Seconds())
}

// ObserveSync records one fdatasync of a partition file; a non-nil err
// counts as an fsync error.
func (m *Metrics) ObserveSync(d time.Duration, err error) {
	m.syncDuration.Observe(d.Seconds())
	if err != nil {
		m.syncErrors.Inc()
	}
}

// ConnOpened records a new connection on transport ("tcp", "quic",
// "quic-stream", "link").
func (m *Metrics) ConnOpened(transport string) {
	transport = orUnknown(transport)
	m.connsOpen.WithLabelValues(transport).Inc()
	m.conns.WithLabelValues(transport).Inc()
}

// ConnRefused records a connection closed at once for limit
// ("max_connections" or "max_connections_per_ip").
func (m *Metrics) ConnRefused(transport, limit string) {
	m.refused.WithLabelValues(orUnknown(transport), limit).Inc()
}

// ConnClosed records the end of a connection ConnOpened recorded.
func (m *Metrics) ConnClosed(transport string) {
	m.conns.WithLabelValues(orUnknown(transport)).Dec()
}

// ObservePluginCall records one plugin call. digest names the module (the
// short form of its sha256 keeps series readable), kind its role
// ("partitioner", "filter", "cleanup"); failure is empty on success and
// otherwise a short reason ("trap", "timeout", "memory").
func (m *Metrics) ObservePluginCall(digest, kind string, d time.Duration, failure string) {
	digest, kind = orUnknown(digest), orUnknown(kind)
	m.pluginCalls.WithLabelValues(digest, kind).Inc()
	m.pluginDuration.WithLabelValues(kind).Observe(d.Seconds())
	if failure != "" {
		m.pluginFailures.WithLabelValues(digest, kind, failure).Inc()
	}
}

// SetProduceRefused records whether produces are being refused for lack
// of disk space.
func (m *Metrics) SetProduceRefused(refused bool) {
	v := 0.0
	if refused {
		v = 1
	}
	m.produceRefused.Set(v)
}

// GroupRebalance records a consumer group rebalance under protocol
// ("classic" or "consumer").
func (m *Metrics) GroupRebalance(protocol string) {
	m.rebalances.WithLabelValues(orUnknown(protocol)).Inc()
}

// factory creates metrics in the Eddy namespace and registers them.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// slogPrinter adapts a *slog.Logger to promhttp's Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Error("serve metrics", "err", fmt.Sprint(v...))
}
