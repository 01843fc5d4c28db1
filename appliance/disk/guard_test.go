package disk

import (
	"errors"
	"strings"
	"testing"
)

// TestGuardHysteresis: refusal starts at the hard watermark or the
// free-bytes floor and ends only at the soft watermark.
func TestGuardHysteresis(t *testing.T) {
	sp := Space{}
	var statErr error
	g := NewGuard("/data", Watermarks{Hard: 95, Soft: 90, MinFree: 10 << 20}, func(string) (Space, error) { return sp, statErr })
	const gb = 1 << 30
	steps := []struct {
		used, avail uint64
		refusing    bool
	}{
		{50 * gb, 50 * gb, false},
		{94 * gb, 6 * gb, false},
		{95 * gb, 5 * gb, true},   // hard watermark
		{92 * gb, 8 * gb, true},   // between: still refusing
		{90 * gb, 10 * gb, false}, // soft watermark
		{93 * gb, 7 * gb, false},  // between: still writing
		{100, 5 << 20, true},      // nearly empty disk, but under the floor
		{100, 20 << 20, false},
	}
	for i, s := range steps {
		sp = Space{Used: s.used, Avail: s.avail}
		if _, err := g.Check(); err != nil {
			t.Fatal(err)
		}
		if g.Refusing() != s.refusing || (g.Err() != nil) != s.refusing {
			t.Fatalf("step %d (%.1f%% used, %d free): refusing %v, want %v", i, sp.UsedPercent(), s.avail, g.Refusing(), s.refusing)
		}
	}
	sp = Space{Used: 96 * gb, Avail: 4 * gb}
	if changed, _ := g.Check(); !changed {
		t.Fatal("crossing the hard watermark is not a change")
	}
	msg := g.Err().Error()
	for _, want := range []string{"/data", "96.0% full", "disk.hard_watermark 95%", "disk.soft_watermark 90%"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	// A failed read keeps the decision.
	statErr = errors.New("EIO")
	if _, err := g.Check(); err == nil || !g.Refusing() {
		t.Fatal("a failed statfs changed the decision")
	}
	// Reloaded watermarks apply at the next check.
	statErr = nil
	g.SetWatermarks(Watermarks{Hard: 99, Soft: 97})
	if g.Check(); g.Refusing() {
		t.Fatal("96% used is below the new soft watermark 97%")
	}
}

func TestStatSpaceReadsTheFilesystem(t *testing.T) {
	sp, err := StatSpace(t.TempDir())
	if err != nil || sp.Used+sp.Avail == 0 {
		t.Fatalf("statfs: %+v %v", sp, err)
	}
	if _, err := StatSpace("/does/not/exist"); err == nil || !strings.Contains(err.Error(), "/does/not/exist") {
		t.Fatalf("statfs of a missing dir: %v", err)
	}
}
