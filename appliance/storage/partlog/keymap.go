package partlog

import (
	"bytes"
	"hash/maphash"
	"math/bits"
)

// keyMap maps record keys to their latest offset within a memory budget.
// It is an open-addressing table of 24-byte slots with linear probing.
// While the keys fit, it keeps them exactly, in an arena; beyond that it
// switches to 128-bit hashes of the keys (two independent 64-bit hashes),
// so it holds more keys in the same memory at a collision risk of about
// n²/2¹²⁹. When even the hashes no longer fit, full reports it and the
// pass stops taking segments.
type keyMap struct {
	slots  []keySlot
	arena  []byte // exact keys, back to back
	used   int
	hashed bool
	budget int64
}

// keySlot: h is the first hash with its low bit forced to 1 (0 marks an
// empty slot); ref is the key's arena position<<32|length when exact, the
// second hash when hashed.
type keySlot struct {
	h, ref uint64
	off    int64
}

const (
	keySlotBytes = 24
	// keyMapLoad is the fill, in percent, at which the table grows.
	keyMapLoad  = 80
	minKeySlots = 1 << 10
)

var keySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func newKeyMap(budget int64) *keyMap {
	if budget <= 0 {
		budget = 32 << 20
	}
	return &keyMap{budget: budget, slots: make([]keySlot, min(minKeySlots, max(budget/keySlotBytes, 1)))}
}

// bytes is the memory the map holds.
func (m *keyMap) bytes() int64 { return int64(len(m.slots))*keySlotBytes + int64(cap(m.arena)) }

func (m *keyMap) len() int { return m.used }

// maxSlots is the largest table the budget allows in hashed mode.
func (m *keyMap) maxSlots() int { return int(max(m.budget/keySlotBytes, minKeySlots)) }

// full reports whether another key might not fit.
func (m *keyMap) full() bool {
	return m.hashed && (m.used+1)*100 > m.maxSlots()*keyMapLoad
}

func hash1(k []byte) uint64 { return maphash.Bytes(keySeeds[0], k) | 1 }
func hash2(k []byte) uint64 { return maphash.Bytes(keySeeds[1], k) }

// home is the first slot probed for h: h scaled onto the table.
func home(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

// find returns the slot holding k, or the empty slot where it would go.
func (m *keyMap) find(k []byte, h, h2 uint64) int {
	n := len(m.slots)
	for i := home(h, n); ; i++ {
		if i == n {
			i = 0
		}
		s := &m.slots[i]
		if s.h == 0 {
			return i
		}
		if s.h != h {
			continue
		}
		if m.hashed {
			if s.ref == h2 {
				return i
			}
		} else if bytes.Equal(m.arena[s.ref>>32:s.ref>>32+s.ref&0xffffffff], k) {
			return i
		}
	}
}

func (m *keyMap) put(k []byte, off int64) {
	h, h2 := hash1(k), uint64(0)
	if m.hashed {
		h2 = hash2(k)
	}
	i := m.find(k, h, h2)
	if s := &m.slots[i]; s.h != 0 {
		s.off = max(s.off, off)
		return
	}
	ref := h2
	if !m.hashed {
		ref = uint64(len(m.arena))<<32 | uint64(len(k))
		m.arena = append(m.arena, k...)
	}
	m.slots[i] = keySlot{h: h, ref: ref, off: off}
	m.used++
	if m.used*100 > len(m.slots)*keyMapLoad {
		m.grow()
	} else if !m.hashed && m.bytes() > m.budget {
		m.rehash(len(m.slots), true)
	}
}

func (m *keyMap) get(k []byte) (int64, bool) {
	h, h2 := hash1(k), uint64(0)
	if m.hashed {
		h2 = hash2(k)
	}
	s := m.slots[m.find(k, h, h2)]
	return s.off, s.h != 0
}

// grow doubles the table, within the budget: in exact mode a table that
// would not fit with its keys turns to hashes; in hashed mode the table
// stops at the budget, and full keeps the load under the limit.
func (m *keyMap) grow() {
	n := 2 * len(m.slots)
	if m.hashed {
		if n = min(n, m.maxSlots()); n <= len(m.slots) {
			if m.used*100 <= len(m.slots)*95 {
				return
			}
			// One segment brought more new keys than the budget holds
			// (the pass checks full between segments): go over the
			// budget rather than fill the table.
			n = 2 * len(m.slots)
		}
		m.rehash(n, false)
		return
	}
	if int64(n)*keySlotBytes+int64(len(m.arena)) > m.budget {
		m.rehash(min(n, m.maxSlots()), true)
		return
	}
	m.rehash(n, false)
}

// rehash moves every key to a table of n slots, turning exact keys into
// hashes when toHashed.
func (m *keyMap) rehash(n int, toHashed bool) {
	old := m.slots
	m.slots = make([]keySlot, n)
	for _, s := range old {
		if s.h == 0 {
			continue
		}
		if toHashed {
			s.ref = hash2(m.arena[s.ref>>32 : s.ref>>32+s.ref&0xffffffff])
		}
		i := home(s.h, n)
		for m.slots[i].h != 0 {
			if i++; i == n {
				i = 0
			}
		}
		m.slots[i] = s
	}
	if toHashed {
		m.hashed, m.arena = true, nil
	}
}
