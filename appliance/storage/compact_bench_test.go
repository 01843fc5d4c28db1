package storage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/cleaner"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// compactKeys is the key space of the compaction benchmarks: every key is
// written twice, so a full pass removes half of the records.
const compactKeys = 1_000_000

func compactLogConfig() partlog.Config {
	cfg := partlog.DefaultConfig("compact-0")
	cfg.Compact = true
	cfg.RetentionMs = -1
	cfg.SegmentBytes = 64 << 20
	return cfg
}

var compactTemplate struct {
	once sync.Once
	dir  string
	err  error
}

// compactTemplateDir writes, once per process, a sealed partition of
// 2 million 100-byte records over 1 million keys.
func compactTemplateDir(b *testing.B) string {
	compactTemplate.once.Do(func() {
		dir, err := os.MkdirTemp(os.Getenv("EDDY_BENCH_DIR"), "eddy-compact-template-")
		if err != nil {
			compactTemplate.err = err
			return
		}
		compactTemplate.dir = dir
		compactTemplate.err = writeCompactTemplate(filepath.Join(dir, "compact-0"))
	})
	if compactTemplate.err != nil {
		b.Fatal(compactTemplate.err)
	}
	return filepath.Join(compactTemplate.dir, "compact-0")
}

func writeCompactTemplate(dir string) error {
	c := flush.New(flush.Config{Mode: flush.OS})
	defer c.Close()
	l, _, err := partlog.Open(vfs.OS, dir, compactLogConfig(), partlog.Options{Committer: c})
	if err != nil {
		return err
	}
	val := make([]byte, 100)
	recs := make([]record.Simple, 1000)
	for round := 0; round < 2; round++ {
		for k := 0; k < compactKeys; k += len(recs) {
			for i := range recs {
				recs[i] = record.Simple{Key: fmt.Appendf(nil, "key-%07d", k+i), Value: val}
			}
			buf, err := record.Build(record.BatchOptions{ProducerID: -1, BaseTimestamp: time.Now().UnixMilli()}, recs)
			if err != nil {
				return err
			}
			if _, err := l.Append(buf, 0); err != nil {
				return err
			}
		}
	}
	if err := l.Roll(); err != nil {
		return err
	}
	return l.Close()
}

// copyDir copies the files of one partition directory.
func copyDir(dst, src string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openCopy opens a fresh copy of the template partition.
func openCopy(b *testing.B, c *flush.Committer) *partlog.Log {
	dir := filepath.Join(benchDir(b), "compact-0")
	if err := copyDir(dir, compactTemplateDir(b)); err != nil {
		b.Fatal(err)
	}
	l, _, err := partlog.Open(vfs.OS, dir, compactLogConfig(), partlog.Options{Committer: c})
	if err != nil {
		b.Fatal(err)
	}
	l.SetHighWatermark(l.Offsets().LEO)
	return l
}

// heapPeak samples the live heap until stopped and returns the peak
// above the level at the start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// BenchmarkCompact cleans a partition of 1 million keys, each written
// twice (2 million records, about 250 MB), in one pass: with a key map
// large enough for exact keys, with one that holds only their 128-bit
// hashes, and with the default 32 MiB buffer, which covers part of the
// log per pass. MB/s is over the bytes the pass read.
func BenchmarkCompact(b *testing.B) {
	for _, buf := range []int64{256 << 20, 64 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("keys=1M/dedupe_buffer=%dMiB", buf>>20), func(b *testing.B) {
			c := flush.New(flush.Config{Mode: flush.OS})
			defer c.Close()
			var last partlog.CompactResult
			var peak uint64
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				l := openCopy(b, c)
				stop := heapPeak()
				b.StartTimer()
				res, err := l.Compact(partlog.CompactOptions{Now: time.Now(), MaxMapBytes: buf})
				b.StopTimer()
				peak = max(peak, stop())
				if err != nil {
					b.Fatal(err)
				}
				if res.RecordsRemoved == 0 {
					b.Fatal("the pass removed nothing")
				}
				last = res
				l.Close()
				b.StartTimer()
			}
			b.SetBytes(last.BytesRead)
			b.ReportMetric(float64(last.RecordsRemoved), "removed/op")
			b.ReportMetric(float64(last.MapKeys), "mapkeys")
			b.ReportMetric(float64(last.MapBytes)/(1<<20), "map-MiB")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			hashed := 0.0
			if last.MapHashed {
				hashed = 1
			}
			b.ReportMetric(hashed, "hashed")
		})
	}
}

// BenchmarkAppendWhileCleaning measures durable 16 KiB appends to one
// partition (group commit) with the cleaner idle, and while a cleaner
// compacts another 1-million-key partition on the same disk, unthrottled
// and at 32 MiB/s. With the cleaner on, only appends made while a pass is
// running count (fresh copies of the dirty partition are made between
// passes, outside the measurement). It reports p50 and p99 latency.
func BenchmarkAppendWhileCleaning(b *testing.B) {
	for _, mode := range []struct {
		name     string
		clean    bool
		throttle int64
	}{{"cleaner=idle", false, 0}, {"cleaner=unthrottled", true, 0}, {"cleaner=32MiBps", true, 32 << 20}} {
		b.Run(mode.name, func(b *testing.B) {
			c := flush.New(flush.Config{Mode: flush.Group, MaxDelay: benchDelay(), MaxBatchBytes: 1 << 20})
			defer c.Close()
			l, _, err := partlog.Open(vfs.OS, filepath.Join(benchDir(b), "produce-0"), partlog.DefaultConfig("produce-0"), partlog.Options{Committer: c})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := batchOf(b, 16<<10)
			stop := make(chan struct{})
			var cleaned sync.WaitGroup
			var passes atomic.Int64
			var active atomic.Bool
			if mode.clean {
				bg := flush.New(flush.Config{Mode: flush.OS})
				defer bg.Close()
				cl := openCopy(b, bg)
				defer cl.Close()
				cleaned.Add(1)
				go func() {
					defer cleaned.Done()
					throttle := cleaner.Throttle(mode.throttle)
					for {
						select {
						case <-stop:
							return
						default:
						}
						// Each pass cleans a fresh copy: reopen it when
						// the last pass left nothing dirty.
						active.Store(true)
						_, err := cl.Compact(partlog.CompactOptions{Now: time.Now(), MaxMapBytes: 32 << 20, Throttle: throttle})
						active.Store(false)
						if err != nil {
							b.Error(err)
							return
						}
						passes.Add(1)
						cl.Close()
						cl = openCopy(b, bg)
					}
				}()
			}
			lat := make([]time.Duration, 0, 1<<16)
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				counts := !mode.clean || active.Load()
				t0 := time.Now()
				if _, err := l.Append(batch, 0); err != nil {
					b.Fatal(err)
				}
				if counts && (!mode.clean || active.Load()) {
					lat = append(lat, time.Since(t0))
				}
			}
			b.StopTimer()
			close(stop)
			cleaned.Wait()
			if len(lat) < 100 {
				b.Fatalf("only %d appends overlapped a cleaning pass", len(lat))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			if mode.clean {
				b.ReportMetric(float64(passes.Load()), "cleaner-passes")
				b.ReportMetric(float64(len(lat)), "measured-appends")
			}
		})
	}
}
