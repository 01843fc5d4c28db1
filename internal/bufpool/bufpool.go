// Package bufpool keeps large byte buffers for reuse. Without it every
// large batch a node handles (a Produce frame, a transformed batch) costs
// an allocation, its zeroing and its garbage collection.
package bufpool

import (
	"sync"
	"unsafe"
)

// steps is the number of size classes per doubling: a buffer is at most a
// quarter larger than asked (plus the unit's rounding at the bottom).
const steps = 4

// maxClasses bounds the classes above the unit: 2^15 times it (2 GiB for
// 64 KiB). Larger buffers are allocated and left to the collector.
const maxClasses = 15 * steps

// Pool recycles buffers in size classes: from the unit up, four classes
// per doubling (1, 1.25, 1.5 and 1.75 times a power of two of the unit),
// so a 1 MiB batch with its request header takes a 1.25 MiB buffer, not
// 2 MiB. Each class is a sync.Pool: a node under load reuses the buffers
// of the requests it has finished, whatever their number, and an idle
// node's free buffers go back to the collector within two collections,
// so what it keeps follows the load rather than a fixed budget. It is
// safe for concurrent use.
type Pool struct {
	unit    int
	classes [maxClasses]sync.Pool // unsafe.Pointer to a buffer's first byte
}

// New returns a pool of buffers of at least unit bytes.
func New(unit int) *Pool { return &Pool{unit: unit} }

// size is the capacity of class i's buffers.
func (p *Pool) size(i int) int {
	return p.unit * (steps + i%steps) << (i / steps) / steps
}

// classFor returns the smallest class holding n bytes, or -1 when n is
// beyond the largest.
func (p *Pool) classFor(n int) int {
	for i := range maxClasses {
		if p.size(i) >= n {
			return i
		}
	}
	return -1
}

// spill is how many classes above n's a Get may take a free buffer from
// when n's own class has none: at most half as large again as n's class.
// Sizes that vary from request to request then share buffers instead of
// each class allocating its own, and keeping them busy keeps them from
// the collector, which empties a class left unused for two collections.
const spill = 2

// Get returns a buffer of length n whose bytes are unspecified: a
// recycled one of n's class or of one of the spill classes above when
// there is one, else a new one of n's class's size.
func (p *Pool) Get(n int) []byte {
	i := p.classFor(n)
	if i < 0 {
		return make([]byte, n)
	}
	for j := i; j <= i+spill && j < maxClasses; j++ {
		if v := p.classes[j].Get(); v != nil {
			return unsafe.Slice((*byte)(v.(unsafe.Pointer)), p.size(j))[:n]
		}
	}
	return make([]byte, n, p.size(i))
}

// Put hands b back for a later Get, in the largest class its capacity
// holds (a buffer grown by append still serves). Buffers below the unit
// are left to the collector. The caller must not use b afterwards, and
// must put a buffer once: two Gets would share a buffer put twice.
func (p *Pool) Put(b []byte) {
	if cap(b) < p.unit {
		return
	}
	// The largest class it holds: the one before the first it does not.
	i := p.classFor(cap(b) + 1)
	if i < 0 {
		i = maxClasses
	}
	p.classes[i-1].Put(unsafe.Pointer(unsafe.SliceData(b[:1])))
}
