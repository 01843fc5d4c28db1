// Package bufpool keeps large byte buffers for reuse within a byte
// budget. Without it every large batch a node handles (a Produce frame, a
// transformed batch) costs an allocation, its zeroing and its garbage
// collection.
package bufpool

import "sync"

// Pool is a free list of buffers whose capacities are whole multiples of
// a unit; rounding up keeps, for example, a 1 MiB batch's buffer at 1 MiB
// and one unit. It holds at most its budget of free bytes: what a node
// keeps when idle, and what it adds to the heap the collector paces itself
// by. Demand beyond that allocates. It is safe for concurrent use.
type Pool struct {
	unit, budget int

	mu    sync.Mutex
	free  [][]byte
	bytes int
}

// New returns a pool of buffers in multiples of unit bytes, keeping at
// most budget bytes free.
func New(unit, budget int) *Pool { return &Pool{unit: unit, budget: budget} }

// Get returns a buffer of length n, recycled when one large enough is
// free, else new. Its bytes are unspecified.
func (p *Pool) Get(n int) []byte {
	p.mu.Lock()
	for i := len(p.free) - 1; i >= 0; i-- {
		if b := p.free[i]; cap(b) >= n {
			last := len(p.free) - 1
			p.free[i], p.free[last] = p.free[last], nil
			p.free = p.free[:last]
			p.bytes -= cap(b)
			p.mu.Unlock()
			return b[:n]
		}
	}
	p.mu.Unlock()
	return make([]byte, n, (n+p.unit-1)/p.unit*p.unit)
}

// Put keeps b for a later Get while the free bytes stay within the
// budget. The caller must not use b afterwards. A buffer put twice is
// kept once: two Gets must never share one.
func (p *Pool) Put(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:1]
	p.mu.Lock()
	for _, f := range p.free {
		if &f[:1][0] == &b[0] {
			p.mu.Unlock()
			return
		}
	}
	if p.bytes+cap(b) <= p.budget {
		p.free = append(p.free, b[:0])
		p.bytes += cap(b)
	}
	p.mu.Unlock()
}
