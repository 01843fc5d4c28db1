package segment

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

func batchAt(t *testing.T, base int64, n, size int, ts int64) ([]byte, BatchInfo) {
	t.Helper()
	recs := make([]record.Simple, n)
	for i := range recs {
		recs[i] = record.Simple{Value: fmt.Appendf(nil, "%0*d", size, base+int64(i)), TimestampDelta: int64(i)}
	}
	b, err := record.Build(record.BatchOptions{BaseOffset: base, BaseTimestamp: ts, ProducerID: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	rb := record.Batch(b)
	return b, BatchInfo{Base: base, Last: rb.LastOffset(), MaxTimestamp: rb.MaxTimestamp()}
}

func TestSparseIndexAndLookup(t *testing.T) {
	mem := vfs.NewMem()
	mem.MkdirAll("/p")
	s, err := Create(mem, "/p", 100, Options{IndexIntervalBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for i := 0; i < 50; i++ {
		b, info := batchAt(t, 100+int64(i)*2, 2, 100, int64(i)*10)
		if err := s.Append(b, []BatchInfo{info}); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(b))
	}
	s.mu.RLock()
	entries := len(s.mu.index)
	s.mu.RUnlock()
	total := 0
	for _, n := range sizes {
		total += n
	}
	if want := total/1000 + 1; entries < want-2 || entries > want+2 {
		t.Fatalf("%d index entries for %d bytes at a 1000-byte interval (want about %d)", entries, total, want)
	}
	for o := int64(100); o < 200; o++ {
		data, err := s.Read(o, 1, 1<<62, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := record.Batch(data)
		if b.BaseOffset() > o || b.LastOffset() < o {
			t.Fatalf("read at %d returned batch %d..%d", o, b.BaseOffset(), b.LastOffset())
		}
	}
	// Indexes survive a seal and a reopen, and lookups agree.
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(mem, "/p", 100, Options{IndexIntervalBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if next, _ := s2.NextOffset(); next != 200 {
		t.Fatalf("next offset after reopen %d", next)
	}
	s2.mu.RLock()
	reloaded := len(s2.mu.index)
	s2.mu.RUnlock()
	if reloaded != entries {
		t.Fatalf("reloaded %d index entries, wrote %d", reloaded, entries)
	}
	if ts, off, _ := s2.MaxTimestamp(); ts != 491 || off != 199 {
		t.Fatalf("max timestamp %d at %d", ts, off)
	}
	off, _, ok, err := s2.FindTimestamp(245, 0, 0)
	if err != nil || !ok || off != 100+2*25 {
		t.Fatalf("timestamp 245: %d %v %v", off, ok, err)
	}
}

func TestRollReasons(t *testing.T) {
	mem := vfs.NewMem()
	mem.MkdirAll("/p")
	s, _ := Create(mem, "/p", 0, Options{IndexIntervalBytes: 0, MaxIndexEntries: 3})
	b, info := batchAt(t, 0, 1, 10, 0)
	if r := s.RollReason(len(b), 0, 1000); r != "" {
		t.Fatalf("empty segment wants to roll: %s", r)
	}
	s.Append(b, []BatchInfo{info})
	if r := s.RollReason(2000, 1, 1000); r != "size" {
		t.Fatalf("oversized: %q", r)
	}
	if r := s.RollReason(10, 1<<31, 1<<30); r != "offset overflow" {
		t.Fatalf("relative offset overflow: %q", r)
	}
	for i := int64(1); i < 3; i++ {
		b, info := batchAt(t, i, 1, 10, i)
		s.Append(b, []BatchInfo{info})
	}
	if r := s.RollReason(10, 3, 1<<30); r != "index full" {
		t.Fatalf("full index: %q", r)
	}
}

func TestRebuildIndexOfSealedSegment(t *testing.T) {
	dir := t.TempDir()
	s, _ := Create(vfs.OS, dir, 0, Options{IndexIntervalBytes: 200})
	for i := int64(0); i < 20; i++ {
		b, info := batchAt(t, i, 1, 100, i)
		s.Append(b, []BatchInfo{info})
	}
	s.Seal()
	s.Close()
	// Damage the index: it is rebuilt from the log on first use.
	idx := filepath.Join(dir, Name(0, IndexSuffix))
	f, _ := vfs.OS.Create(idx)
	f.Write([]byte{0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0}) // decreasing
	f.Close()
	s2, _ := Open(vfs.OS, dir, 0, Options{IndexIntervalBytes: 200})
	defer s2.Close()
	for o := int64(0); o < 20; o++ {
		data, err := s2.Read(o, 1, 1<<62, nil)
		if err != nil || record.Batch(data).BaseOffset() != o {
			t.Fatalf("read %d after index rebuild: %v", o, err)
		}
	}
}

// allocated returns the bytes the filesystem holds for a file.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestPreallocationIsAHint: appends past a quarter chunk reserve space
// ahead in chunks, unless
// CanPreallocate refuses (a nearly full disk), and either way they
// succeed.
func TestPreallocationIsAHint(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprint("allow=", allow), func(t *testing.T) {
			dir := t.TempDir()
			asked := 0
			s, err := Create(vfs.OS, dir, 0, Options{IndexIntervalBytes: 4096, PreallocateBytes: 4 << 20,
				CanPreallocate: func(n int64) bool { asked++; return allow }})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// 1.3 MB of batches: past a quarter chunk, so preallocation starts.
			for i := int64(0); i < 100; i++ {
				b, info := batchAt(t, i*100, 100, 130, 1000)
				if err := s.Append(b, []BatchInfo{info}); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
			got := allocated(t, filepath.Join(dir, Name(0, LogSuffix)))
			switch {
			case asked == 0:
				t.Fatal("CanPreallocate was never asked")
			case allow && got < 4<<20:
				t.Fatalf("%d bytes allocated; a 4 MiB chunk was allowed", got)
			case !allow && got >= 2<<20:
				t.Fatalf("%d bytes allocated though preallocation was refused", got)
			}
			if err := s.Seal(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
