package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// benchDir returns a directory on the disk under test: EDDY_BENCH_DIR, or a
// temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("EDDY_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "eddy-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// batchOf builds a batch of 1 KiB records of at least size bytes.
func batchOf(b *testing.B, size int) []byte {
	n := max(size/1000, 1)
	recs := make([]record.Simple, n)
	val := make([]byte, 1024-20)
	for i := range val {
		val[i] = byte(i * 7)
	}
	for i := range recs {
		recs[i] = record.Simple{Key: []byte("key"), Value: val}
	}
	buf, err := record.Build(record.BatchOptions{ProducerID: -1, BaseTimestamp: time.Now().UnixMilli()}, recs)
	if err != nil {
		b.Fatal(err)
	}
	return buf
}

// BenchmarkDiskFdatasync is the disk's own ceiling: sequential 1 MiB
// writes, each followed by fdatasync, to a growing file.
func BenchmarkDiskFdatasync(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("write=%dKiB", size>>10), func(b *testing.B) {
			f, err := os.Create(filepath.Join(benchDir(b), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := fdatasync(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppend measures durable appends of 1 KiB records in 16 KiB and
// 1 MiB batches, with one appender and with 8 appenders on 8 partitions,
// under the group and os flush modes.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []flush.Mode{flush.Group, flush.OS} {
		for _, size := range []int{16 << 10, 1 << 20} {
			for _, writers := range []int{1, 8} {
				b.Run(fmt.Sprintf("flush=%s/batch=%dKiB/partitions=%d", mode, size>>10, writers), func(b *testing.B) {
					benchAppend(b, mode, size, writers)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, mode flush.Mode, size, writers int) {
	st, err := Open(vfs.OS, Config{
		Dir:   benchDir(b),
		Flush: flush.Config{Mode: mode, MaxDelay: benchDelay(), MaxBatchBytes: 1 << 20},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	logs := make([]*partlog.Log, writers)
	bufs := make([][]byte, writers)
	for i := range logs {
		cfg := partlog.DefaultConfig("")
		cfg.WritebackBytes = 256 << 10 // as a node does by default (io.writeback_bytes)
		if logs[i], err = st.CreateLog(TopicPartition{"bench", int32(i)}, cfg); err != nil {
			b.Fatal(err)
		}
		bufs[i] = batchOf(b, size)
	}
	b.SetBytes(int64(len(bufs[0])))
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan struct{}, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if _, err := logs[i].Append(bufs[i], 0); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	// The b.N loop, not b.Loop (which stops the timer when it ends): the
	// appends still in flight must count.
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	if cs := st.Committer().Stats(); cs.Flushes > 0 {
		b.ReportMetric(float64(cs.Syncs)/float64(cs.Flushes), "syncs/flush")
	}
}

// BenchmarkReadCached reads a 256 MiB log back sequentially from the page
// cache with 1 MiB reads.
func BenchmarkReadCached(b *testing.B) {
	for _, verify := range []bool{false, true} {
		b.Run(fmt.Sprintf("verify=%v", verify), func(b *testing.B) {
			st, err := Open(vfs.OS, Config{Dir: benchDir(b), Flush: flush.Config{Mode: flush.OS}})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cfg := partlog.DefaultConfig("")
			cfg.VerifyReads = verify
			cfg.SegmentBytes = 64 << 20
			l, err := st.CreateLog(TopicPartition{"read", 0}, cfg)
			if err != nil {
				b.Fatal(err)
			}
			buf := batchOf(b, 64<<10)
			for l.Size() < 256<<20 {
				if _, err := l.Append(buf, 0); err != nil {
					b.Fatal(err)
				}
			}
			// Warm the page cache.
			for off := int64(0); off < l.Offsets().HW; {
				res, err := l.Read(off, 1<<20, false)
				if err != nil {
					b.Fatal(err)
				}
				off = record.Batch(res.Data[lastBatch(res.Data):]).LastOffset() + 1
			}
			hw := l.Offsets().HW
			b.ResetTimer()
			off := int64(0)
			var n int64
			rbuf := make([]byte, 2<<20) // a fetch path reuses pooled buffers
			for b.Loop() {
				if off >= hw {
					off = 0
				}
				res, err := l.ReadInto(rbuf, off, 1<<20, false)
				if err != nil {
					b.Fatal(err)
				}
				n += int64(len(res.Data))
				off = record.Batch(res.Data[lastBatch(res.Data):]).LastOffset() + 1
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds()/1e6, "MB/s")
		})
	}
}

// lastBatch returns the position of the last batch in buf.
func lastBatch(buf []byte) int {
	pos := 0
	for {
		n, _ := record.PeekSize(buf[pos:])
		if pos+n >= len(buf) {
			return pos
		}
		pos += n
	}
}

func benchDelay() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("EDDY_BENCH_DELAY")); err == nil {
		return d
	}
	return 2 * time.Millisecond
}

// BenchmarkAppendVsDisk alternates, op by op, a raw 1 MiB write+fdatasync
// to a plain file and a group-commit append of a 1 MiB batch to a partition
// on the same disk, so both see the same disk weather. It reports each rate
// and their ratio.
func BenchmarkAppendVsDisk(b *testing.B) {
	dir := benchDir(b)
	st, err := Open(vfs.OS, Config{Dir: filepath.Join(dir, "store"), Flush: flush.Config{Mode: flush.Group, MaxDelay: benchDelay()}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	l, err := st.CreateLog(TopicPartition{"bench", 0}, partlog.DefaultConfig(""))
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	batch := batchOf(b, 1<<20)
	raw := make([]byte, len(batch))
	var tRaw, tLog time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.Write(raw); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := l.Append(batch, 0); err != nil {
			b.Fatal(err)
		}
		tRaw += t1.Sub(t0)
		tLog += time.Since(t1)
	}
	n := float64(b.N) * float64(len(batch))
	b.ReportMetric(n/tRaw.Seconds()/1e6, "disk-MB/s")
	b.ReportMetric(n/tLog.Seconds()/1e6, "append-MB/s")
	b.ReportMetric(tRaw.Seconds()/tLog.Seconds(), "append/disk")
}
