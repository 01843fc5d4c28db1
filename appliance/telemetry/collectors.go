package telemetry

import (
	"iter"
	"strconv"
	"sync/atomic"

	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/prometheus/client_golang/prometheus"
)

// PartitionStats is one partition's log as the partition collector reports
// it.
type PartitionStats struct {
	Topic          string
	Partition      int32
	SizeBytes      int64 // bytes of all segments
	Segments       int
	LogStartOffset int64
	HighWatermark  int64
	LogEndOffset   int64
	// Cleaner is set for compacted partitions.
	Cleaner *CleanerStats
}

// CleanerStats is a compacted partition's log cleaner state.
type CleanerStats struct {
	DirtyBytes     int64   // sealed bytes not yet cleaned: the cleaner's lag
	DirtyRatio     float64 // of the sealed bytes
	BytesCleaned   int64   // read by passes so far
	RecordsRemoved int64
	Failures       uint64
}

// SetPartitionSource installs the function the partition collector calls
// on every scrape to list the partitions this node hosts; nil removes it.
// The sequence is consumed within the scrape and may be called again on the
// next one, concurrently with the broker's work: it must take its own
// locks.
func (m *Metrics) SetPartitionSource(src iter.Seq[PartitionStats]) {
	if src == nil {
		m.partitions.src.Store(nil)
		return
	}
	m.partitions.src.Store(&src)
}

// partitionCollector reports per-partition log gauges from a callback.
type partitionCollector struct {
	src                            atomic.Pointer[iter.Seq[PartitionStats]]
	size, segments, start, hw, leo *prometheus.Desc
	count                          *prometheus.Desc
	dirty, dirtyRatio, cleaned     *prometheus.Desc
	removed, cleanerFailures       *prometheus.Desc
}

func newPartitionCollector() *partitionCollector {
	labels := []string{"topic", "partition"}
	d := func(name, help string, l []string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "partition", name), help, l, nil)
	}
	return &partitionCollector{
		size:     d("log_size_bytes", "Bytes of the partition's log segments.", labels),
		segments: d("log_segments", "Segments in the partition's log.", labels),
		start:    d("log_start_offset", "First offset still in the partition's log.", labels),
		hw:       d("high_watermark", "The partition's high watermark: the end of what consumers may read.", labels),
		leo:      d("log_end_offset", "The partition's log end offset: the offset of the next record appended.", labels),
		count:    prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "partitions"), "Partitions hosted by this node.", nil, nil),

		dirty:           d("cleaner_dirty_bytes", "Sealed bytes of a compacted partition the log cleaner has not yet cleaned (its lag).", labels),
		dirtyRatio:      d("cleaner_dirty_ratio", "Share of a compacted partition's sealed bytes not yet cleaned.", labels),
		cleaned:         d("cleaner_bytes_cleaned_total", "Bytes the log cleaner has read cleaning the partition.", labels),
		removed:         d("cleaner_records_removed_total", "Records the log cleaner has removed from the partition.", labels),
		cleanerFailures: d("cleaner_failures_total", "Log cleaner passes over the partition that failed (each is retried after a backoff).", labels),
	}
}

// Describe implements prometheus.Collector.
func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.segments, c.start, c.hw, c.leo, c.count, c.dirty, c.dirtyRatio, c.cleaned, c.removed, c.cleanerFailures} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	n := 0
	for p := range *src {
		n++
		part := strconv.Itoa(int(p.Partition))
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(p.SizeBytes), p.Topic, part)
		ch <- prometheus.MustNewConstMetric(c.segments, prometheus.GaugeValue, float64(p.Segments), p.Topic, part)
		ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, float64(p.LogStartOffset), p.Topic, part)
		ch <- prometheus.MustNewConstMetric(c.hw, prometheus.GaugeValue, float64(p.HighWatermark), p.Topic, part)
		ch <- prometheus.MustNewConstMetric(c.leo, prometheus.GaugeValue, float64(p.LogEndOffset), p.Topic, part)
		if cs := p.Cleaner; cs != nil {
			ch <- prometheus.MustNewConstMetric(c.dirty, prometheus.GaugeValue, float64(cs.DirtyBytes), p.Topic, part)
			ch <- prometheus.MustNewConstMetric(c.dirtyRatio, prometheus.GaugeValue, cs.DirtyRatio, p.Topic, part)
			ch <- prometheus.MustNewConstMetric(c.cleaned, prometheus.CounterValue, float64(cs.BytesCleaned), p.Topic, part)
			ch <- prometheus.MustNewConstMetric(c.removed, prometheus.CounterValue, float64(cs.RecordsRemoved), p.Topic, part)
			ch <- prometheus.MustNewConstMetric(c.cleanerFailures, prometheus.CounterValue, float64(cs.Failures), p.Topic, part)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(n))
}

// SetIOProfile exports the facts of the io-profile in use, so a fleet's
// disks can be compared: the kind, the measured bandwidth, sync latency
// and random-read rate.
func (m *Metrics) SetIOProfile(p disk.Profile) { m.ioProfile.p.Store(&p) }

// ioProfileCollector reports the io-profile set by SetIOProfile.
type ioProfileCollector struct {
	p                          atomic.Pointer[disk.Profile]
	info, seqWrite, sync, iops *prometheus.Desc
}

func newIOProfileCollector() *ioProfileCollector {
	d := func(name, help string, l ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "io_profile", name), help, l, nil)
	}
	return &ioProfileCollector{
		info:     d("info", "Always 1; labels describe the data disk and how its io-profile was derived.", "device", "kind", "basis", "fs_type"),
		seqWrite: d("seq_write_bytes_per_second", "Sequential write bandwidth the probe measured."),
		sync:     d("sync_p99_seconds", "p99 of write+fdatasync the probe measured, by batch size.", "batch_bytes"),
		iops:     d("rand_read_iops", "Random 4 KiB reads per second at queue depth 1 the probe measured."),
	}
}

// Describe implements prometheus.Collector.
func (c *ioProfileCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.seqWrite, c.sync, c.iops} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ioProfileCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.p.Load()
	if p == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1,
		orUnknown(p.Info.Device.Name), string(p.Kind), string(p.Basis), orUnknown(p.Info.FSType))
	m := p.Measurements
	if m == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.seqWrite, prometheus.GaugeValue, m.SeqWriteBytesPerSec)
	for _, s := range m.Sync {
		if s.Samples > 0 {
			ch <- prometheus.MustNewConstMetric(c.sync, prometheus.GaugeValue, s.P99.D().Seconds(), strconv.Itoa(s.Bytes))
		}
	}
	ch <- prometheus.MustNewConstMetric(c.iops, prometheus.GaugeValue, m.RandRead.IOPS)
}
