package disk

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Space is how full a filesystem is.
type Space struct {
	Used  uint64 // bytes in use
	Avail uint64 // bytes an unprivileged writer may still use
}

// UsedPercent is the share of the usable space in use, as df computes it
// (blocks reserved for root count as neither).
func (s Space) UsedPercent() float64 {
	if s.Used+s.Avail == 0 {
		return 0
	}
	return 100 * float64(s.Used) / float64(s.Used+s.Avail)
}

// StatSpace reads the usage of the filesystem holding dir.
func StatSpace(dir string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return Space{Used: (st.Blocks - st.Bfree) * bs, Avail: st.Bavail * bs}, nil
}

// Watermarks say when writes must stop for lack of space and when they
// may resume.
type Watermarks struct {
	Hard    int    // percent used at which writes stop
	Soft    int    // percent used at or below which they resume
	MinFree uint64 // writes stop below this many free bytes, whatever the percentage
}

// Guard decides, from the data disk's usage, whether produces are
// refused. Refusal starts at the hard watermark (or below the free-bytes
// floor) and ends only at the soft watermark (with the floor free again),
// so producers do not flap at the edge.
type Guard struct {
	dir  string
	stat func(string) (Space, error)

	mu       sync.Mutex
	w        Watermarks
	refusing bool
	last     Space
	statErr  error
}

// NewGuard watches the filesystem of dir; stat nil means StatSpace.
func NewGuard(dir string, w Watermarks, stat func(string) (Space, error)) *Guard {
	if stat == nil {
		stat = StatSpace
	}
	return &Guard{dir: dir, stat: stat, w: w}
}

// SetWatermarks changes the thresholds (a reload); the next Check applies
// them.
func (g *Guard) SetWatermarks(w Watermarks) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.w = w
}

// Check reads the usage and updates the decision. It reports whether the
// decision changed. A failed read keeps the last decision.
func (g *Guard) Check() (changed bool, err error) {
	sp, err := g.stat(g.dir)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.statErr = err
	if err != nil {
		return false, err
	}
	g.last = sp
	used := sp.UsedPercent()
	was := g.refusing
	switch {
	case used >= float64(g.w.Hard) || sp.Avail < g.w.MinFree:
		g.refusing = true
	case used <= float64(g.w.Soft):
		g.refusing = false
	}
	return was != g.refusing, nil
}

// Refusing reports whether produces are refused now.
func (g *Guard) Refusing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusing
}

// Err returns nil while writes are allowed, and otherwise an error naming
// the data directory, its usage and the watermarks, for the producer.
func (g *Guard) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.refusing {
		return nil
	}
	return fmt.Errorf("data disk of %s is %.1f%% full with %s free: above disk.hard_watermark %d%% or below disk.min_free_bytes %s; produces resume at disk.soft_watermark %d%%",
		g.dir, g.last.UsedPercent(), human(float64(g.last.Avail)), g.w.Hard, human(float64(g.w.MinFree)), g.w.Soft)
}

// Last returns the usage the last Check read.
func (g *Guard) Last() Space {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}
