package disk

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	psdisk "github.com/shirou/gopsutil/v3/disk"

	"github.com/eddybroker/eddy/appliance/config"
)

// want are expected settings by key.
type want map[string]string

func TestDerivedSettingsPerHost(t *testing.T) {
	cases := []struct {
		name   string
		host   fakeHost
		m      *Measurements
		force  bool
		source Source
		kind   Kind
		want   want
	}{
		{
			name: "sd card, not probed", host: sdHost, source: SourceClassified, kind: KindSD,
			want: want{
				KeySegmentBytes: "64MiB", KeyMaxBatchBytes: "4MiB", KeyMaxDelay: "20ms",
				KeyMaxInflight: "1", KeySyncConcurrency: "1", KeyPreallocateBytes: "16MiB",
				KeyWriteBuffer: "1MiB", KeyReadConcurrency: "2", KeyFadvise: FadviseDropSealed,
			},
		},
		{
			name: "sd card, forced probe", host: sdHost, m: sdCurve, force: true, source: SourceProbed, kind: KindSD,
			want: want{
				// knee 256KiB raised to the SD floor; 2 x p99(1MiB)=240ms capped at 50ms
				KeySegmentBytes: "64MiB", KeyMaxBatchBytes: "2MiB", KeyMaxDelay: "50ms",
				KeyMaxInflight: "1", KeySyncConcurrency: "1", KeyPreallocateBytes: "16MiB",
				KeyWriteBuffer: "1MiB",
			},
		},
		{
			name: "sata ssd", host: ssdHost, m: ssdCurve, source: SourceProbed, kind: KindSSD,
			want: want{
				// 13.5 GB of writes in 30 s, capped at 1GiB then RAM/8; knee 256KiB;
				// 2 x p99(256KiB) = 4ms; preallocation gains 25%
				KeySegmentBytes: "512MiB", KeyMaxBatchBytes: "256KiB", KeyMaxDelay: "4ms",
				KeyMaxInflight: "2", KeySyncConcurrency: "4", KeyPreallocateBytes: "64MiB",
				KeyWriteBuffer: "2MiB", KeyReadConcurrency: "16", KeyFadvise: FadviseDropSealed,
			},
		},
		{
			name: "nvme", host: nvmeHost, m: nvmeCurve, source: SourceProbed, kind: KindNVMe,
			want: want{
				// knee 256KiB raised to the 2MiB NVMe floor; 2 x p99(1MiB) = 2ms;
				// preallocation gains 1%: off
				KeySegmentBytes: "1GiB", KeyMaxBatchBytes: "2MiB", KeyMaxDelay: "2ms",
				KeyMaxInflight: "4", KeySyncConcurrency: "8", KeyPreallocateBytes: "0",
				KeyWriteBuffer: "8MiB", KeyReadConcurrency: "32", KeyFadvise: FadviseKeep,
			},
		},
		{
			name: "hdd", host: hddHost, m: hddCurve, source: SourceProbed, kind: KindHDD,
			want: want{
				// no batch reaches half the bandwidth: twice the largest;
				// 2 x p99(1MiB) = 64ms capped at 30ms
				KeySegmentBytes: "1GiB", KeyMaxBatchBytes: "2MiB", KeyMaxDelay: "30ms",
				KeyMaxInflight: "1", KeySyncConcurrency: "2", KeyPreallocateBytes: "32MiB",
				KeyReadConcurrency: "4",
			},
		},
	}
	// The hosts are fakes but the data directory is real: give it a
	// filesystem with room for any segment, so the free-space cap (tested
	// on its own below) does not follow the machine running the test.
	withFreeSpace(t, 1<<40)
	profiles := map[string]Profile{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := c.host.build(t)
			calls := 0
			m := c.m
			if m == nil {
				m = sdCurve
			}
			p, src, err := Ensure(context.Background(), t.TempDir(), EnsureOptions{
				Options: Options{Root: root}, Force: c.force, Prober: countingProber(m, &calls),
			})
			if err != nil {
				t.Fatal(err)
			}
			wantCalls := 1
			if c.source == SourceClassified {
				wantCalls = 0
			}
			if src != c.source || calls != wantCalls || p.Kind != c.kind {
				t.Fatalf("source %s, %d probes, kind %s; want %s, %d, %s", src, calls, p.Kind, c.source, wantCalls, c.kind)
			}
			for k, v := range c.want {
				s, ok := p.Get(k)
				if !ok || s.Value != v {
					t.Errorf("%s = %q (%s), want %q", k, s.Value, s.Rule, v)
				}
			}
			for _, s := range p.Settings {
				if s.Rule == "" {
					t.Errorf("%s has no rule", s.Key)
				}
			}
			profiles[c.name] = p
		})
	}
	// The three hosts of the brief differ in segment and flush settings.
	sd, ssd, nvme := profiles["sd card, not probed"], profiles["sata ssd"], profiles["nvme"]
	for _, key := range []string{KeySegmentBytes, KeyMaxDelay, KeyMaxInflight, KeySyncConcurrency} {
		a, _ := sd.Get(key)
		b, _ := ssd.Get(key)
		c, _ := nvme.Get(key)
		if a.Value == b.Value || b.Value == c.Value || a.Value == c.Value {
			t.Errorf("%s: sd %s, ssd %s, nvme %s; want three different values", key, a.Value, b.Value, c.Value)
		}
	}
}

// withFreeSpace makes Discover see free bytes free (of ten times as many)
// on the data directory's filesystem until the test ends.
func withFreeSpace(t *testing.T, free uint64) {
	t.Helper()
	real := statfs
	statfs = func(ctx context.Context, path string) (*psdisk.UsageStat, error) {
		u, err := real(ctx, path)
		if err != nil {
			return nil, err
		}
		u.Total, u.Free = 10*free, free
		return u, nil
	}
	t.Cleanup(func() { statfs = real })
}

func TestSegmentsAreCappedByTheFreeSpace(t *testing.T) {
	// 40 GiB free: a 1 GiB segment would take more than 1/64 of it (640
	// MiB, and segment sizes are powers of two).
	withFreeSpace(t, 40<<30)
	info, err := Discover(t.TempDir(), Options{Root: nvmeHost.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := Derive(info, nvmeCurve).Get(KeySegmentBytes)
	if !ok || s.Value != "512MiB" || !strings.Contains(s.Rule, "capped at 1/64 of the free space") {
		t.Fatalf("log.segment_bytes = %q (%s), want 512MiB capped at 1/64 of the free space", s.Value, s.Rule)
	}
	// Plenty of room: the device's own figure stands.
	withFreeSpace(t, 1<<40)
	if info, err = Discover(t.TempDir(), Options{Root: nvmeHost.build(t)}); err != nil {
		t.Fatal(err)
	}
	if s, _ := Derive(info, nvmeCurve).Get(KeySegmentBytes); s.Value != "1GiB" || strings.Contains(s.Rule, "free space") {
		t.Fatalf("log.segment_bytes = %q (%s) with 1 TiB free, want 1GiB", s.Value, s.Rule)
	}
}

func TestDeriveIsPure(t *testing.T) {
	info, err := Discover(t.TempDir(), Options{Root: nvmeHost.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	a, b := Derive(info, nvmeCurve), Derive(info, nvmeCurve)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("Derive gave two answers for the same inputs")
	}
	if !a.Generated.IsZero() {
		t.Fatal("Derive read the clock")
	}
	if a.Basis != BasisMeasured || Derive(info, nil).Basis != BasisClassification {
		t.Fatal("basis does not follow the measurements")
	}
}

func TestMeasurementsOverrideTheRotationalFlag(t *testing.T) {
	// A virtio disk claims rotational=1; measured flash-like reads make it
	// an SSD, and measured seeks make the same device an HDD.
	info, err := Discover(t.TempDir(), Options{Root: virtioHost.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p := Derive(info, ssdCurve); p.Kind != KindSSD || !strings.Contains(strings.Join(p.Reasons, ";"), "random 4 KiB reads") {
		t.Errorf("fast virtio: kind %s (%q), want ssd from the measured reads", p.Kind, p.Reasons)
	}
	if p := Derive(info, hddCurve); p.Kind != KindHDD {
		t.Errorf("seeking virtio: kind %s (%q), want hdd", p.Kind, p.Reasons)
	}
	// A disk claiming rotational=0 that seeks is treated as what it does.
	ssd, err := Discover(t.TempDir(), Options{Root: ssdHost.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p := Derive(ssd, hddCurve); p.Kind != KindHDD {
		t.Errorf("rotational=0 but seeking: kind %s, want hdd", p.Kind)
	}
	// Names win over measurements: an SD card stays an SD card.
	sd, err := Discover(t.TempDir(), Options{Root: sdHost.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p := Derive(sd, nvmeCurve); p.Kind != KindSD || !p.WearSensitive {
		t.Errorf("fast sd card: kind %s wear %v, want sd and wear-sensitive", p.Kind, p.WearSensitive)
	}
}

func TestWriteTOMLHasOnlyConfigKeys(t *testing.T) {
	info, err := Discover(t.TempDir(), Options{Root: ssdHost.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := Derive(info, ssdCurve)
	var b bytes.Buffer
	if err := p.WriteTOML(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"[flush]", "[log]", `max_delay = "4ms"`, `segment_bytes = "512MiB"`, "sync_concurrency = 4",
		"[io]", "write_buffer_bytes", "fadvise", "read_concurrency"} {
		if !strings.Contains(out, s) {
			t.Errorf("io-profile.toml lacks %q:\n%s", s, out)
		}
	}
	// What the file holds loads as the io-profile layer of the
	// configuration, every key accepted.
	path := filepath.Join(t.TempDir(), "io-profile.toml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{IOProfile: path})
	if err != nil {
		t.Fatalf("the io-profile does not load: %v", err)
	}
	if cfg.Source(KeyFadvise) != config.IOProfile || cfg.Source(KeySegmentBytes) != config.IOProfile {
		t.Fatalf("io-profile keys not applied: fadvise from %s, segment_bytes from %s", cfg.Source(KeyFadvise), cfg.Source(KeySegmentBytes))
	}
	b.Reset()
	// A value the configuration would reject is refused, naming the key.
	p.Settings = append(p.Settings, Setting{Key: KeyMaxDelay, Value: "0s", Rule: "broken"})
	if err := p.WriteTOML(&b); err == nil || !strings.Contains(err.Error(), "flush.max_delay") {
		t.Fatalf("invalid value written: err %v", err)
	}
}
