package partlog

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestKeyMapAgainstMap checks the table against a Go map through growth,
// the switch from exact keys to hashes, and a budget too small for the
// keys put into it.
func TestKeyMapAgainstMap(t *testing.T) {
	for _, tc := range []struct {
		name       string
		budget     int64
		keys       int
		wantHashed bool
	}{
		{"exact", 8 << 20, 20_000, false},
		{"hashed", 1 << 20, 30_000, true},
		{"over budget", 64 << 10, 20_000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.keys)))
			m := newKeyMap(tc.budget)
			want := map[string]int64{}
			for off := int64(0); off < int64(3*tc.keys); off++ {
				k := fmt.Sprintf("key-%d", rng.IntN(tc.keys))
				m.put([]byte(k), off)
				want[k] = off
				if !m.hashed && m.bytes() > tc.budget {
					t.Fatalf("exact map holds %d bytes over a budget of %d", m.bytes(), tc.budget)
				}
			}
			if m.hashed != tc.wantHashed {
				t.Fatalf("hashed = %v, want %v (%d keys in %d bytes)", m.hashed, tc.wantHashed, m.len(), m.bytes())
			}
			if m.len() != len(want) {
				t.Fatalf("%d keys, want %d", m.len(), len(want))
			}
			for k, off := range want {
				if got, ok := m.get([]byte(k)); !ok || got != off {
					t.Fatalf("key %q: %d %v, want %d", k, got, ok, off)
				}
			}
			for i := 0; i < 1000; i++ {
				if _, ok := m.get(fmt.Appendf(nil, "absent-%d", i)); ok {
					t.Fatalf("absent key %d found", i)
				}
			}
			if m.hashed && tc.name == "hashed" {
				if m.bytes() > tc.budget {
					t.Fatalf("hashed map holds %d bytes over a budget of %d", m.bytes(), tc.budget)
				}
			}
			if tc.name == "over budget" && !m.full() {
				t.Fatal("a map over its budget does not report full")
			}
		})
	}
}

// TestKeyMapKeepsLatest: an older offset put later does not replace a
// newer one, and the empty key is a key.
func TestKeyMapKeepsLatest(t *testing.T) {
	m := newKeyMap(1 << 20)
	m.put([]byte("a"), 10)
	m.put([]byte("a"), 5)
	m.put([]byte{}, 7)
	if off, _ := m.get([]byte("a")); off != 10 {
		t.Fatalf("latest offset of a is %d, want 10", off)
	}
	if off, ok := m.get([]byte{}); !ok || off != 7 {
		t.Fatalf("empty key: %d %v", off, ok)
	}
}
