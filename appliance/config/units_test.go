package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    Duration
		canon   string
		wantErr string
	}{
		{in: "7d", want: Duration(7 * 24 * time.Hour), canon: "7d"},
		{in: "36h", want: Duration(36 * time.Hour), canon: "36h"},
		{in: "1d12h", want: Duration(36 * time.Hour), canon: "36h"},
		{in: "1.5d", want: Duration(36 * time.Hour), canon: "36h"},
		{in: "2ms", want: Duration(2 * time.Millisecond), canon: "2ms"},
		{in: "1m30s", want: Duration(90 * time.Second), canon: "1m30s"},
		{in: "1.5s", want: Duration(1500 * time.Millisecond), canon: "1s500ms"},
		{in: "5m", want: Duration(5 * time.Minute), canon: "5m"},
		{in: "48h", want: Duration(48 * time.Hour), canon: "2d"},
		{in: "250us", want: Duration(250 * time.Microsecond), canon: "250us"},
		{in: "3ns", want: 3, canon: "3ns"},
		{in: " 10s ", want: Duration(10 * time.Second), canon: "10s"},
		{in: "0", want: 0, canon: "0s"},
		{in: "0s", want: 0, canon: "0s"},
		{in: "-1", want: Forever, canon: "forever"},
		{in: "forever", want: Forever, canon: "forever"},
		{in: "2xs", wantErr: `"2xs" is not a duration`},
		{in: "7days", wantErr: "is not a duration"},
		{in: "d", wantErr: "is not a duration"},
		{in: "1d10", wantErr: "is not a duration"},
		{in: "60", wantErr: "has no unit"},
		{in: "1.5", wantErr: "has no unit"},
		{in: "-5s", wantErr: "is negative"},
		{in: "", wantErr: "empty"},
		{in: "200000000d", wantErr: "not a duration"},
		{in: "100000d100000d", wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v (%d), %v; want %d", tt.in, got, int64(got), err, int64(tt.want))
			}
			if s := got.String(); s != tt.canon {
				t.Errorf("String() = %q, want %q", s, tt.canon)
			}
			var back Duration
			if err := back.UnmarshalText([]byte(got.String())); err != nil || back != got {
				t.Errorf("round trip of %q: got %v, %v", got.String(), back, err)
			}
			text, _ := got.MarshalText()
			if string(text) != tt.canon {
				t.Errorf("MarshalText = %q, want %q", text, tt.canon)
			}
		})
	}
}

func TestDurationAccessors(t *testing.T) {
	d := Duration(90 * time.Second)
	if d.D() != 90*time.Second || d.IsForever() {
		t.Errorf("D() = %v, IsForever = %v", d.D(), d.IsForever())
	}
	if !Forever.IsForever() || Forever.D() >= 0 {
		t.Errorf("Forever: IsForever = %v, D() = %v", Forever.IsForever(), Forever.D())
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		canon   string
		wantErr string
	}{
		{in: "1GiB", want: GiB, canon: "1GiB"},
		{in: "512KiB", want: 512 * KiB, canon: "512KiB"},
		{in: "16MiB", want: 16 * MiB, canon: "16MiB"},
		{in: "2TiB", want: 2 * TiB, canon: "2TiB"},
		{in: "1024MiB", want: GiB, canon: "1GiB"},
		{in: "1024000", want: 1000 * KiB, canon: "1000KiB"},
		{in: "1048576", want: MiB, canon: "1MiB"},
		{in: "1 GiB", want: GiB, canon: "1GiB"},
		{in: "1KB", want: 1000, canon: "1KB"},
		{in: "5MB", want: 5_000_000, canon: "5MB"},
		{in: "3GB", want: 3_000_000_000, canon: "3GB"},
		{in: "1TB", want: 1_000_000_000_000, canon: "1TB"},
		{in: "75B", want: 75, canon: "75B"},
		{in: "75", want: 75, canon: "75B"},
		{in: "2147483647", want: 2147483647, canon: "2147483647B"},
		{in: "0", want: 0, canon: "0"},
		{in: "-1", want: NoLimit, canon: "-1"},
		{in: "12XB", wantErr: `unknown unit "XB"`},
		{in: "1.5GiB", wantErr: "unknown unit"},
		{in: "1gib", wantErr: "unknown unit"},
		{in: "GiB", wantErr: "is not a size"},
		{in: "-2", wantErr: "is negative"},
		{in: "-1MiB", wantErr: "is negative"},
		{in: "", wantErr: "empty"},
		{in: "9999999TiB", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSize(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.canon {
				t.Errorf("String() = %q, want %q", s, tt.canon)
			}
			var back Size
			if err := back.UnmarshalText([]byte(got.String())); err != nil || back != got {
				t.Errorf("round trip of %q: got %v, %v", got.String(), back, err)
			}
			if got.Int64() != int64(tt.want) {
				t.Errorf("Int64() = %d", got.Int64())
			}
		})
	}
}
