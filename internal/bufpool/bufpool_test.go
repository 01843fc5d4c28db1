package bufpool

import (
	"runtime/debug"
	"testing"
)

func TestGetSizesBuffersByClass(t *testing.T) {
	p := New(64 << 10)
	for _, c := range []struct{ n, cap int }{
		{1, 64 << 10},
		{64 << 10, 64 << 10},
		{64<<10 + 1, 80 << 10},
		{1 << 20, 1 << 20},
		{1<<20 + 61, 1280 << 10},
		{8387889, 8 << 20},
		{100 << 20, 112 << 20},
	} {
		b := p.Get(c.n)
		if len(b) != c.n || cap(b) != c.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", c.n, len(b), cap(b), c.n, c.cap)
		}
	}
	// Beyond the largest class a buffer is exactly what was asked.
	if n := p.size(maxClasses-1) + 1; p.classFor(n) != -1 {
		t.Errorf("class for %d bytes: %d, want none", n, p.classFor(n))
	}
}

// reuses counts the Gets of n bytes, each after a Put of a buffer of
// capacity c, that returned the buffer put. The race detector makes a
// sync.Pool drop a quarter of what it is given, and a collection empties
// it, so collections are held off and a majority is asked for.
func reuses(p *Pool, c, n int) int {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	got := 0
	for range 100 {
		b := make([]byte, 1, c)
		p.Put(b)
		if g := p.Get(n); &g[0] == &b[0] {
			got++
		}
	}
	return got
}

func TestPutBuffersAreReused(t *testing.T) {
	p := New(64 << 10)
	if got := reuses(p, 1<<20, 1<<20); got < 50 {
		t.Errorf("a 1 MiB buffer came back for 1 MiB in %d of 100 tries", got)
	}
	// A buffer grown past its class serves the largest class it holds.
	if got := reuses(p, 1<<20+5000, 1<<20); got < 50 {
		t.Errorf("a buffer of 1 MiB and 5000 bytes came back for 1 MiB in %d of 100 tries", got)
	}
	if got := reuses(p, 1<<20+5000, 1<<20+1); got != 0 {
		t.Errorf("a buffer of 1 MiB and 5000 bytes was handed out for 1.25 MiB %d times", got)
	}
	// A free buffer up to two classes larger serves a Get whose own class
	// has none; three classes larger is too wasteful.
	p = New(64 << 10)
	if got := reuses(p, 1536<<10, 1<<20); got < 50 {
		t.Errorf("a 1.5 MiB buffer came back for 1 MiB in %d of 100 tries", got)
	}
	if got := reuses(p, 1792<<10, 1<<20); got != 0 {
		t.Errorf("a 1.75 MiB buffer was handed out for 1 MiB %d times", got)
	}
	// Below the unit nothing is kept.
	if got := reuses(p, 32<<10, 1); got != 0 {
		t.Errorf("a 32 KiB buffer was kept in a 64 KiB pool (%d times)", got)
	}
}

func TestRecycledBufferKeepsItsLength(t *testing.T) {
	p := New(64 << 10)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	reused := 0
	for range 10 {
		b := p.Get(100 << 10)
		p.Put(b[:3])
		g := p.Get(110 << 10)
		if len(g) != 110<<10 || cap(g) != 112<<10 {
			t.Fatalf("Get(110 KiB) after Put: len %d cap %d, want %d and %d", len(g), cap(g), 110<<10, 112<<10)
		}
		if &g[0] == &b[0] {
			reused++
		}
		p.Put(g)
	}
	if reused == 0 {
		t.Fatal("a buffer put with length 3 never came back for a Get of its class")
	}
}
