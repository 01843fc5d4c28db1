package bufpool

import "testing"

func TestPoolRecyclesWithinItsBudget(t *testing.T) {
	p := New(64, 256)
	a := p.Get(100)
	if len(a) != 100 || cap(a) != 128 {
		t.Fatalf("Get(100): len %d cap %d, want 100 and 128", len(a), cap(a))
	}
	a[0] = 7
	p.Put(a)
	b := p.Get(90)
	if len(b) != 90 || &b[0] != &a[0] {
		t.Fatalf("Get(90) after Put: a new buffer (len %d), want the free one", len(b))
	}
	// Too small to serve: a new buffer, and the free one stays.
	p.Put(b)
	c := p.Get(200)
	if cap(c) != 256 || &c[0] == &b[0] {
		t.Fatalf("Get(200): cap %d, reused %v; want a new 256-byte buffer", cap(c), &c[0] == &b[0])
	}
	// The budget: 128 free + 256 would exceed 256 bytes, so c is dropped.
	p.Put(c)
	if p.bytes != 128 || len(p.free) != 1 {
		t.Fatalf("free list %d buffers, %d bytes; want 1 and 128", len(p.free), p.bytes)
	}
	if d := p.Get(128); &d[0] != &b[0] || p.bytes != 0 {
		t.Fatalf("Get(128) did not take the free buffer (free bytes %d)", p.bytes)
	}
}

func TestPoolKeepsABufferPutTwiceOnce(t *testing.T) {
	p := New(64, 1024)
	a := p.Get(64)
	p.Put(a)
	p.Put(a[:10])
	if len(p.free) != 1 || p.bytes != 64 {
		t.Fatalf("free list %d buffers, %d bytes after putting one buffer twice", len(p.free), p.bytes)
	}
	if b, c := p.Get(64), p.Get(64); &b[0] == &c[0] {
		t.Fatal("two Gets share one buffer")
	}
}
