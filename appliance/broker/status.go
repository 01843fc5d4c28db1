package broker

import (
	"sort"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/partlog"
)

// PartitionStatus is what the admin API reports of a partition's storage.
type PartitionStatus struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	LogStart  int64   `json:"log_start"`
	HW        int64   `json:"high_watermark"`
	LEO       int64   `json:"log_end"`
	Size      int64   `json:"size_bytes"`
	Segments  int     `json:"segments"`
	Failed    string  `json:"failed,omitempty"`
	Cleaner   *Cleans `json:"cleaner,omitempty"`
}

// Cleans is a compacted partition's cleaner state.
type Cleans struct {
	// State is "cleaning", "idle", or "retry at <time>" after a failure.
	State          string    `json:"state"`
	DirtyRatio     float64   `json:"dirty_ratio"`
	DirtyBytes     int64     `json:"dirty_bytes"`
	CleanerOffset  int64     `json:"cleaner_offset"`
	LastCleaned    time.Time `json:"last_cleaned,omitzero"`
	Runs           uint64    `json:"runs"`
	Failures       uint64    `json:"failures"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	BytesCleaned   int64     `json:"bytes_cleaned"`
	RecordsRemoved int64     `json:"records_removed"`
}

// Partitions reports every partition of the named topic (all topics when
// the name is empty).
func (b *Broker) Partitions(name string) []PartitionStatus {
	b.mu.RLock()
	var ts []*topic
	for tname, t := range b.mu.topics {
		if name == "" || tname == name {
			ts = append(ts, t)
		}
	}
	b.mu.RUnlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].meta.Name < ts[j].meta.Name })
	var out []PartitionStatus
	for _, t := range ts {
		for _, p := range t.parts {
			out = append(out, partitionStatus(p.log, t.meta.Name, p.tp.Partition))
		}
	}
	return out
}

func partitionStatus(l *partlog.Log, topic string, part int32) PartitionStatus {
	off := l.Offsets()
	ps := PartitionStatus{Topic: topic, Partition: part, LogStart: off.LogStart, HW: off.HW, LEO: off.LEO, Size: l.Size(), Segments: l.SegmentCount()}
	if err := l.Failed(); err != nil {
		ps.Failed = err.Error()
	}
	if l.Config().Compact {
		st := l.CleanerState()
		c := &Cleans{DirtyBytes: st.DirtyBytes, CleanerOffset: st.CleanerOffset, LastCleaned: st.LastCleaned, Runs: st.Runs, Failures: st.Failures,
			LastError: st.LastError, LastErrorAt: st.LastErrorAt, BytesCleaned: st.BytesCleaned, RecordsRemoved: st.RecordsRemoved}
		switch {
		case st.Cleaning:
			c.State = "cleaning"
		case !st.RetryAt.IsZero():
			c.State = "retry at " + st.RetryAt.UTC().Format(time.RFC3339)
		default:
			c.State = "idle"
		}
		if st.TotalBytes > 0 {
			c.DirtyRatio = float64(st.DirtyBytes) / float64(st.TotalBytes)
		}
		ps.Cleaner = c
	}
	return ps
}
