package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a length of time in the configuration. It is written as a Go
// duration ("2ms", "1h30m") that may also use d for days ("7d", "1d12h").
// "-1" and "forever" mean Forever, which only some keys accept. A bare
// number is rejected: the unit is never guessed.
type Duration time.Duration

// Forever is the Duration of keys that never expire ("-1" or "forever").
const Forever Duration = -1

// durationUnits lists the units a Duration accepts, for error messages.
const durationUnits = "ns, us, ms, s, m, h, d"

// D returns d as a time.Duration; Forever becomes -1ns.
func (d Duration) D() time.Duration { return time.Duration(d) }

// IsForever reports whether d is Forever.
func (d Duration) IsForever() bool { return d == Forever }

// String returns the canonical form: "forever", whole days as "7d",
// otherwise the non-zero parts from hours down ("36h", "1m30s", "2ms").
func (d Duration) String() string {
	switch {
	case d == Forever:
		return "forever"
	case d < 0:
		return time.Duration(d).String()
	case d == 0:
		return "0s"
	}
	const day = 24 * time.Hour
	rest := time.Duration(d)
	if rest%day == 0 {
		return strconv.FormatInt(int64(rest/day), 10) + "d"
	}
	var b strings.Builder
	for _, u := range []struct {
		name string
		size time.Duration
	}{
		{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second},
		{"ms", time.Millisecond}, {"us", time.Microsecond}, {"ns", time.Nanosecond},
	} {
		if n := rest / u.size; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			rest -= n * u.size
		}
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler using ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses a configuration duration: a Go duration, optionally
// with d (days) parts, or "-1"/"forever" for Forever.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return 0, errors.New("empty duration")
	case "-1", "forever":
		return Forever, nil
	case "0":
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%q is negative; the only negative duration is -1 (forever)", s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil && (s[0] == '.' || s[0] >= '0' && s[0] <= '9') {
		return 0, fmt.Errorf("%q has no unit; write it with one, e.g. \"%ss\" or \"%sms\"", s, s, s)
	}
	bad := fmt.Errorf("%q is not a duration (units: %s)", s, durationUnits)
	var total time.Duration
	var rest strings.Builder // the parts without days, for time.ParseDuration
	for in := s; in != ""; {
		i := 0
		for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
			i++
		}
		j := i
		for j < len(in) && !(in[j] >= '0' && in[j] <= '9' || in[j] == '.') {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		if in[i:j] == "d" {
			h, err := time.ParseDuration(in[:i] + "h")
			if err != nil || h > math.MaxInt64/24 {
				return 0, bad
			}
			if total += 24 * h; total < 0 {
				return 0, fmt.Errorf("%q is too long", s)
			}
		} else {
			rest.WriteString(in[:j])
		}
		in = in[j:]
	}
	if rest.Len() > 0 {
		d, err := time.ParseDuration(rest.String())
		if err != nil {
			return 0, bad
		}
		if total += d; total < 0 {
			return 0, fmt.Errorf("%q is too long", s)
		}
	}
	return Duration(total), nil
}

// Size is a number of bytes in the configuration. It is written as an
// integer or as a string with a unit: B, KiB, MiB, GiB, TiB (powers of 1024)
// or KB, MB, GB, TB (powers of 1000). -1 means NoLimit, which only some keys
// accept.
type Size int64

// NoLimit is the Size of keys without a bound (-1).
const NoLimit Size = -1

// Common sizes.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// sizeUnits maps each unit to its multiple.
var sizeUnits = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

const sizeUnitNames = "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"

// Int64 returns s in bytes.
func (s Size) Int64() int64 { return int64(s) }

// String returns the canonical form: "-1", "0", or the number in the
// largest unit that divides it exactly ("1GiB", "1MB", "1000KiB", "75B").
func (s Size) String() string {
	if s <= 0 {
		return strconv.FormatInt(int64(s), 10)
	}
	best := sizeUnits[len(sizeUnits)-1] // B
	for _, u := range sizeUnits {
		if int64(s)%u.mult == 0 && u.mult > best.mult {
			best = u
		}
	}
	return strconv.FormatInt(int64(s)/best.mult, 10) + best.name
}

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler using ParseSize.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSize parses a configuration size: an integer number of bytes, an
// integer with a unit ("512KiB", "1 GB"), or "-1" for NoLimit.
func ParseSize(str string) (Size, error) {
	s := strings.TrimSpace(str)
	if s == "" {
		return 0, errors.New("empty size")
	}
	if s == "-1" {
		return NoLimit, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%q is negative; the only negative size is -1 (no limit)", s)
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	unit := strings.TrimSpace(s[i:])
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size (an integer with a unit: %s)", s, sizeUnitNames)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	mult := int64(1)
	if unit != "" {
		mult = 0
		for _, u := range sizeUnits {
			if u.name == unit {
				mult = u.mult
				break
			}
		}
		if mult == 0 {
			return 0, fmt.Errorf("%q is not a size: unknown unit %q (units: %s)", s, unit, sizeUnitNames)
		}
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(n * mult), nil
}
