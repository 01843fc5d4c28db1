package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to one hour, to three
// significant digits.
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLowest, histHighest, histDigits) }

// recorder counts one side of a benchmark (the producers or the
// consumers) and keeps its latency histogram. It is safe for concurrent
// use.
type recorder struct {
	records, bytes, errors atomic.Int64

	mu struct {
		sync.Mutex
		total    *hdrhistogram.Histogram
		interval *hdrhistogram.Histogram // since the last progress line
		firstErr error
		first    time.Time // first record sent or received
		last     time.Time // last record acknowledged or received
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	r.mu.total, r.mu.interval = newHist(), newHist()
	return r
}

// start notes when the side began work: the start of the window its
// rates are computed over. A later call moves the start forward, unless a
// record was already counted before t.
func (r *recorder) start(t time.Time) {
	r.mu.Lock()
	if r.mu.last.IsZero() || t.Before(r.mu.first) {
		r.mu.first = t
	}
	r.mu.Unlock()
}

// done counts n records of size bytes in total that completed at now; lat
// is their latency, or negative when there is none to record.
func (r *recorder) done(now time.Time, lat time.Duration, n, size int) {
	r.records.Add(int64(n))
	r.bytes.Add(int64(size))
	r.mu.Lock()
	if lat >= 0 {
		us := min(max(lat.Microseconds(), histLowest), histHighest)
		r.mu.total.RecordValues(us, int64(n))
		r.mu.interval.RecordValues(us, int64(n))
	}
	if r.mu.first.IsZero() {
		r.mu.first = now
	}
	if now.After(r.mu.last) {
		r.mu.last = now
	}
	r.mu.Unlock()
}

// doneBatch counts n records of size bytes in total received at now,
// with the latencies (nanoseconds) of those that carry one.
func (r *recorder) doneBatch(now time.Time, latsNs []int64, n, size int) {
	r.records.Add(int64(n))
	r.bytes.Add(int64(size))
	r.mu.Lock()
	for _, ns := range latsNs {
		us := min(max(ns/1000, histLowest), histHighest)
		r.mu.total.RecordValue(us)
		r.mu.interval.RecordValue(us)
	}
	if r.mu.first.IsZero() {
		r.mu.first = now
	}
	if now.After(r.mu.last) {
		r.mu.last = now
	}
	r.mu.Unlock()
}

// fail counts an error; the first is kept for the report.
func (r *recorder) fail(err error) {
	r.errors.Add(1)
	r.mu.Lock()
	if r.mu.firstErr == nil {
		r.mu.firstErr = err
	}
	r.mu.Unlock()
}

// intervalP99 returns the 99th percentile since the last call, and starts
// a new interval.
func (r *recorder) intervalP99() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.interval.TotalCount() == 0 {
		return 0, false
	}
	p := r.mu.interval.ValueAtQuantile(99)
	r.mu.interval.Reset()
	return time.Duration(p) * time.Microsecond, true
}

// latencyMs is a latency summary in milliseconds.
type latencyMs struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// sideResult is what one side did.
type sideResult struct {
	Records      int64      `json:"records"`
	Bytes        int64      `json:"bytes"`
	Errors       int64      `json:"errors"`
	FirstError   string     `json:"first_error,omitempty"`
	Missing      *int64     `json:"missing,omitempty"` // e2e: acknowledged records never consumed
	DurationSec  float64    `json:"duration_s"`        // first send (or receipt) to last ack (or receipt)
	RecordsPerS  float64    `json:"records_per_s"`
	MBPerS       float64    `json:"mb_per_s"` // 10^6 bytes of keys and values per second
	LatencyMs    *latencyMs `json:"latency_ms,omitempty"`
	LatencyBasis string     `json:"latency_basis,omitempty"`
}

// result is the --json document.
type result struct {
	Mode       string      `json:"mode"`
	Config     benchConfig `json:"config"`
	ElapsedSec float64     `json:"elapsed_s"`
	Produce    *sideResult `json:"produce,omitempty"`
	Consume    *sideResult `json:"consume,omitempty"`
}

// benchConfig echoes the settings of a run.
type benchConfig struct {
	Transport     string  `json:"transport"`
	Brokers       string  `json:"brokers"`
	Topic         string  `json:"topic"`
	Partitions    int32   `json:"partitions"`
	Producers     int     `json:"producers,omitempty"`
	Consumers     int     `json:"consumers,omitempty"`
	Records       int64   `json:"records,omitempty"`
	DurationSec   float64 `json:"duration_s,omitempty"`
	RecordSize    string  `json:"record_size,omitempty"`
	Payload       string  `json:"payload,omitempty"`
	Keys          int     `json:"keys"`
	Acks          string  `json:"acks,omitempty"`
	LingerMs      float64 `json:"linger_ms"`
	BatchMaxBytes int     `json:"batch_max_bytes,omitempty"`
	Compression   string  `json:"compression,omitempty"`
	Partitioner   string  `json:"partitioner,omitempty"`
	MaxBuffered   int     `json:"max_buffered_records,omitempty"`
	Rate          float64 `json:"rate,omitempty"`
	Assign        string  `json:"assign,omitempty"`
	Group         string  `json:"group,omitempty"`
}

// summary turns a recorder into a sideResult; basis names what latency
// measures ("" when the side records none).
func (r *recorder) summary(basis string) *sideResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &sideResult{Records: r.records.Load(), Bytes: r.bytes.Load(), Errors: r.errors.Load()}
	if r.mu.firstErr != nil {
		s.FirstError = r.mu.firstErr.Error()
	}
	if !r.mu.first.IsZero() && r.mu.last.After(r.mu.first) {
		d := r.mu.last.Sub(r.mu.first).Seconds()
		s.DurationSec = d
		s.RecordsPerS = float64(s.Records) / d
		s.MBPerS = float64(s.Bytes) / d / 1e6
	}
	if h := r.mu.total; basis != "" && h.TotalCount() > 0 {
		ms := func(us int64) float64 { return float64(us) / 1000 }
		s.LatencyMs = &latencyMs{
			P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
			P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)),
			Max: ms(h.Max()), Mean: h.Mean() / 1000,
		}
		s.LatencyBasis = basis
	}
	return s
}

// writeResult prints the result as one JSON document or as text.
func writeResult(w io.Writer, res *result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	var b strings.Builder
	c := res.Config
	fmt.Fprintf(&b, "eddy bench %s: topic %s (%d partitions) over %s at %s\n", res.Mode, c.Topic, c.Partitions, c.Transport, c.Brokers)
	side := func(name string, s *sideResult) {
		if s == nil {
			return
		}
		fmt.Fprintf(&b, "%-8s %d records, %.1f MB in %.2fs: %.0f records/s, %.2f MB/s; %d errors",
			name+":", s.Records, float64(s.Bytes)/1e6, s.DurationSec, s.RecordsPerS, s.MBPerS, s.Errors)
		if s.Missing != nil {
			fmt.Fprintf(&b, ", %d missing", *s.Missing)
		}
		b.WriteString("\n")
		if l := s.LatencyMs; l != nil {
			fmt.Fprintf(&b, "%-8s %s latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
				"", s.LatencyBasis, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
		}
		if s.FirstError != "" {
			fmt.Fprintf(&b, "%-8s first error: %s\n", "", s.FirstError)
		}
	}
	side("produce", res.Produce)
	side("consume", res.Consume)
	_, err := io.WriteString(w, b.String())
	return err
}

// progress prints a live line on a terminal once a second.
type progress struct {
	w    io.Writer
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startProgress prints, every second, each side's rate and interval p99;
// nil sides are left out. It returns nil when w is not to get one.
func startProgress(w io.Writer, enabled bool, start time.Time, prod, cons *recorder) *progress {
	if !enabled || !isTerminal(w) {
		return nil
	}
	p := &progress{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastP, lastC, lastPB, lastCB int64
		last := time.Now()
		for {
			select {
			case <-p.stop:
				fmt.Fprint(w, "\r\033[K")
				return
			case now := <-t.C:
				dt := now.Sub(last).Seconds()
				last = now
				var b strings.Builder
				fmt.Fprintf(&b, "\r\033[K%6.1fs", now.Sub(start).Seconds())
				line := func(name string, r *recorder, lastN, lastB *int64) {
					if r == nil {
						return
					}
					n, by := r.records.Load(), r.bytes.Load()
					fmt.Fprintf(&b, "  %s %d (%.0f/s, %.1f MB/s", name, n, float64(n-*lastN)/dt, float64(by-*lastB)/dt/1e6)
					if p99, ok := r.intervalP99(); ok {
						fmt.Fprintf(&b, ", p99 %.2f ms", float64(p99.Microseconds())/1000)
					}
					if e := r.errors.Load(); e > 0 {
						fmt.Fprintf(&b, ", %d errors", e)
					}
					b.WriteString(")")
					*lastN, *lastB = n, by
				}
				line("produced", prod, &lastP, &lastPB)
				line("consumed", cons, &lastC, &lastCB)
				io.WriteString(w, b.String())
			}
		}
	}()
	return p
}

// close stops the line and clears it; it may be called more than once.
func (p *progress) close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		close(p.stop)
		<-p.done
	})
}
