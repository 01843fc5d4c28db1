package segment

import (
	"errors"
	"sync"
	"testing"

	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// writebacks wraps the real filesystem and records the ranges its files
// are asked to start writing; with refuse set, it fails them instead.
type writebacks struct {
	*vfs.Faulty
	mu     sync.Mutex
	ranges [][2]int64
	refuse bool
}

func newWritebacks(refuse bool) *writebacks {
	w := &writebacks{Faulty: vfs.NewFaulty(vfs.OS), refuse: refuse}
	w.SetInjector(func(op vfs.Op) error {
		if op.Kind != vfs.OpWriteback {
			return nil
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.ranges = append(w.ranges, [2]int64{op.Off, int64(op.Len)})
		if w.refuse {
			return errors.New("not supported")
		}
		return nil
	})
	return w
}

func (w *writebacks) taken() [][2]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.ranges
	w.ranges = nil
	return r
}

// appendN appends n batches of about 10 KiB from offset base on, each
// followed by StartWriteback.
func appendN(t *testing.T, s *Segment, base int64, n int) int64 {
	t.Helper()
	for i := range int64(n) {
		b, info := batchAt(t, base+i*10, 10, 1000, 1000)
		if err := s.Append(b, []BatchInfo{info}); err != nil {
			t.Fatalf("append at %d: %v", base+i*10, err)
		}
		s.StartWriteback()
	}
	return base + int64(n)*10
}

func TestAppendsStartWritebackEveryThreshold(t *testing.T) {
	fsys := newWritebacks(false)
	dir := t.TempDir()
	s, err := Create(fsys, dir, 0, Options{IndexIntervalBytes: 4096, WritebackBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := appendN(t, s, 0, 50) // about 500 KiB
	ranges := fsys.taken()
	if len(ranges) < 5 {
		t.Fatalf("%d writebacks started for 500 KiB with a 64 KiB threshold: %v", len(ranges), ranges)
	}
	from := int64(0)
	for _, r := range ranges {
		switch {
		case r[0] != from:
			t.Fatalf("writeback %v does not start at the page the previous one ended in (%d): %v", r, from, ranges)
		case r[1] < 64<<10:
			t.Fatalf("writeback %v is below the threshold", r)
		case r[0]+r[1] > s.Size():
			t.Fatalf("writeback %v reaches past the data (%d bytes)", r, s.Size())
		}
		from = (r[0] + r[1]) &^ (pageSize - 1)
	}
	if s.Size()-from >= 64<<10+pageSize {
		t.Fatalf("%d bytes appended past the last writeback (at %d) and none started", s.Size()-from, from)
	}

	// A truncation moves the next writeback back to where appends resume.
	if _, err := s.TruncateTo(200); err != nil {
		t.Fatal(err)
	}
	cut := s.Size()
	if cut >= from {
		t.Fatalf("truncation to offset 200 left %d bytes, past the last writeback (%d)", cut, from)
	}
	appendN(t, s, 200, 10)
	if r := fsys.taken(); len(r) == 0 || r[0][0] != cut&^(pageSize-1) {
		t.Fatalf("after truncating to %d bytes, writebacks %v; want the first from %d", cut, r, cut&^(pageSize-1))
	}

	// A reopened segment starts from its end, not from its beginning.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(fsys, dir, 0, Options{IndexIntervalBytes: 4096, WritebackBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Unseal(); err != nil {
		t.Fatal(err)
	}
	size := s2.Size()
	appendN(t, s2, next, 10)
	if r := fsys.taken(); len(r) == 0 || r[0][0] != size&^(pageSize-1) {
		t.Fatalf("reopened at %d bytes, writebacks %v; want the first from %d", size, r, size&^(pageSize-1))
	}
}

func TestWritebackIsAHint(t *testing.T) {
	// Off: nothing is asked.
	fsys := newWritebacks(false)
	s, err := Create(fsys, t.TempDir(), 0, Options{IndexIntervalBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 0, 30)
	if r := fsys.taken(); len(r) != 0 {
		t.Fatalf("writeback started with WritebackBytes 0: %v", r)
	}

	// A file that refuses is asked once; appends go on and the data is whole.
	fsys = newWritebacks(true)
	s, err = Create(fsys, t.TempDir(), 0, Options{IndexIntervalBytes: 4096, WritebackBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := appendN(t, s, 0, 30)
	if r := fsys.taken(); len(r) != 1 {
		t.Fatalf("a refusing file was asked %d times: %v", len(r), r)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.NextOffset(); err != nil || got != next {
		t.Fatalf("next offset %d (%v) after the appends, want %d", got, err, next)
	}
}
