package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/eddybroker/eddy/appliance/config"
)

// maxBenchRecord bounds --record-size: larger values would not fit a
// produce request of any broker's default configuration.
const maxBenchRecord = 64 << 20

// sizeDist is the distribution of record value sizes given by --record-size:
// fixed ("1024", "1KiB"), uniform between two bounds inclusive
// ("100-1000"), or normal with a mean and standard deviation
// ("normal:1024,256"), clipped to [0, mean+5 stddev].
type sizeDist struct {
	spec      string
	kind      byte // 'f' fixed, 'u' uniform, 'n' normal
	lo, hi    int  // fixed: lo; uniform: [lo, hi]; normal: clip bounds
	mean, std float64
}

func parseSizeDist(s string) (sizeDist, error) {
	bad := func(why string, args ...any) (sizeDist, error) {
		return sizeDist{}, fmt.Errorf("--record-size %q: %s", s, fmt.Sprintf(why, args...))
	}
	spec := strings.TrimSpace(s)
	d := sizeDist{spec: spec}
	switch {
	case strings.HasPrefix(spec, "normal:"):
		m, sd, ok := strings.Cut(strings.TrimPrefix(spec, "normal:"), ",")
		if !ok {
			return bad("want normal:MEAN,STDDEV, e.g. normal:1024,256")
		}
		mean, err := parseBenchSize(m)
		if err != nil {
			return bad("mean: %v", err)
		}
		std, err := parseBenchSize(sd)
		if err != nil {
			return bad("standard deviation: %v", err)
		}
		if mean <= 0 {
			return bad("the mean must be above 0")
		}
		d.kind, d.mean, d.std = 'n', float64(mean), float64(std)
		d.lo, d.hi = 0, int(math.Ceil(d.mean+5*d.std))
	case strings.Contains(spec, "-"):
		a, b, _ := strings.Cut(spec, "-")
		lo, err := parseBenchSize(a)
		if err != nil {
			return bad("lower bound: %v", err)
		}
		hi, err := parseBenchSize(b)
		if err != nil {
			return bad("upper bound: %v", err)
		}
		if lo > hi {
			return bad("the lower bound is above the upper bound")
		}
		d.kind, d.lo, d.hi = 'u', lo, hi
		d.mean = float64(lo+hi) / 2
	default:
		n, err := parseBenchSize(spec)
		if err != nil {
			return bad("%v (want a size such as 1024 or 1KiB, a range such as 100-1000, or normal:MEAN,STDDEV)", err)
		}
		d.kind, d.lo, d.hi, d.mean = 'f', n, n, float64(n)
	}
	if d.hi > maxBenchRecord {
		return bad("records of up to %d bytes exceed the limit of %d", d.hi, maxBenchRecord)
	}
	return d, nil
}

// parseBenchSize parses a byte count, with or without a unit.
func parseBenchSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return n, nil
	}
	sz, err := config.ParseSize(s)
	if err != nil {
		return 0, err
	}
	if sz < 0 || sz.Int64() > maxBenchRecord {
		return 0, fmt.Errorf("%q is out of range (0 to %d bytes)", s, maxBenchRecord)
	}
	return int(sz.Int64()), nil
}

// next draws a size.
func (d sizeDist) next(rng *rand.Rand) int {
	switch d.kind {
	case 'u':
		return d.lo + rng.IntN(d.hi-d.lo+1)
	case 'n':
		v := int(math.Round(d.mean + d.std*rng.NormFloat64()))
		return min(max(v, d.lo), d.hi)
	}
	return d.lo
}

// max is the largest size next can return.
func (d sizeDist) max() int { return d.hi }

// String is the specification as given.
func (d sizeDist) String() string { return d.spec }

// payload is a read-only pool of value bytes; each record's value is a
// slice of it at a random offset, so values cost no allocation and are
// not all alike.
type payload struct {
	buf []byte
}

// newPayload returns a pool for values of up to maxSize bytes. "random"
// bytes do not compress; "text" is words separated by spaces, which
// compresses about as well as log lines.
func newPayload(kind string, maxSize int, rng *rand.Rand) (*payload, error) {
	n := maxSize + 1<<20
	buf := make([]byte, n)
	switch kind {
	case "random":
		for i := 0; i+8 <= n; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
	case "text":
		words := strings.Fields(`edge broker partition segment offset commit record batch sensor gateway
			temperature pressure device status online offline reading value error warning info debug
			site link leader replica quorum flush append fetch produce consume group member session`)
		for i := 0; i < n; {
			w := words[rng.IntN(len(words))]
			i += copy(buf[i:], w)
			if i < n {
				buf[i] = ' '
				i++
			}
		}
	default:
		return nil, fmt.Errorf("--payload %q: want random or text", kind)
	}
	return &payload{buf: buf}, nil
}

// value returns size bytes of the pool.
func (p *payload) value(size int, rng *rand.Rand) []byte {
	off := rng.IntN(len(p.buf) - size + 1)
	return p.buf[off : off+size : off+size]
}
