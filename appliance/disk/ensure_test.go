package disk

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
)

func TestEnsureReprobesWhenTheFingerprintChanges(t *testing.T) {
	host := ssdHost
	root := host.build(t)
	data := t.TempDir()
	calls := 0
	opts := EnsureOptions{Options: Options{Root: root}, Prober: countingProber(ssdCurve, &calls)}
	ensure := func(wantSrc Source, wantCalls int) Profile {
		t.Helper()
		p, src, err := Ensure(context.Background(), data, opts)
		if err != nil {
			t.Fatal(err)
		}
		if src != wantSrc || calls != wantCalls {
			t.Fatalf("source %s after %d probes; want %s after %d (notes %q)", src, calls, wantSrc, wantCalls, p.Notes)
		}
		return p
	}

	first := ensure(SourceProbed, 1)
	tomlBefore, err := os.Stat(TOMLPath(data))
	if err != nil {
		t.Fatal(err)
	}
	jsonBefore, _ := os.ReadFile(JSONPath(data))

	// Same device: the stored measurements are used and nothing is rewritten.
	again := ensure(SourceStored, 1)
	if !again.Generated.Equal(first.Generated) {
		t.Errorf("stored profile regenerated: %v -> %v", first.Generated, again.Generated)
	}
	tomlAfter, _ := os.Stat(TOMLPath(data))
	jsonAfter, _ := os.ReadFile(JSONPath(data))
	if !tomlAfter.ModTime().Equal(tomlBefore.ModTime()) || string(jsonAfter) != string(jsonBefore) {
		t.Error("files rewritten although nothing changed")
	}

	// Another disk of the same model (new serial): probe again.
	host.attrs = cloneAttrs(ssdHost.attrs, "device/wwid", "t10.ATA Samsung SSD 870 S6PNNS0X")
	host.write(t, root)
	p := ensure(SourceProbed, 2)
	if !strings.Contains(strings.Join(p.Notes, ";"), "serial") {
		t.Errorf("notes %q do not say the serial changed", p.Notes)
	}
	ensure(SourceStored, 2)

	// A kernel update re-probes too.
	host.kernel = "6.1.0-20-amd64"
	host.write(t, root)
	ensure(SourceProbed, 3)

	// Force always probes.
	opts.Force = true
	ensure(SourceProbed, 4)
	opts.Force = false

	// A damaged io-profile.json is measured again, and said so.
	if err := os.WriteFile(JSONPath(data), []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	p = ensure(SourceProbed, 5)
	if !strings.Contains(strings.Join(p.Notes, ";"), "unusable") {
		t.Errorf("notes %q do not mention the damaged profile", p.Notes)
	}

	// A deleted io-profile.toml is rewritten from the stored measurements.
	if err := os.Remove(TOMLPath(data)); err != nil {
		t.Fatal(err)
	}
	ensure(SourceStored, 5)
	if _, err := os.Stat(TOMLPath(data)); err != nil {
		t.Fatalf("io-profile.toml not rewritten: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(data, ".io-profile*"))
	if len(leftovers) > 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestEnsureSkipsTheProbeOnWearSensitiveMedia(t *testing.T) {
	root := sdHost.build(t)
	data := t.TempDir()
	calls := 0
	opts := EnsureOptions{Options: Options{Root: root}, Prober: countingProber(sdCurve, &calls)}
	for range 2 {
		p, src, err := Ensure(context.Background(), data, opts)
		if err != nil {
			t.Fatal(err)
		}
		if calls != 0 || p.Basis != BasisClassification || p.Measurements != nil {
			t.Fatalf("sd card probed: %d calls, basis %s, source %s", calls, p.Basis, src)
		}
	}
	opts.Force = true
	p, src, err := Ensure(context.Background(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || src != SourceProbed || p.Basis != BasisMeasured {
		t.Fatalf("forced: %d calls, source %s, basis %s", calls, src, p.Basis)
	}
	// The forced measurements are kept: the next start does not drop them.
	opts.Force = false
	p, src, err = Ensure(context.Background(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || src != SourceStored || p.Basis != BasisMeasured {
		t.Fatalf("after forcing: %d calls, source %s, basis %s", calls, src, p.Basis)
	}
}

func TestIOProfileIsAConfigLayerBelowTheFile(t *testing.T) {
	data := t.TempDir()
	calls := 0
	p, _, err := Ensure(context.Background(), data, EnsureOptions{
		Options: Options{Root: ssdHost.build(t)}, Prober: countingProber(ssdCurve, &calls),
		Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Generated.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("generated %v", p.Generated)
	}

	cfg, err := config.Load(config.LoadOptions{IOProfile: TOMLPath(data)})
	if err != nil {
		t.Fatalf("io-profile.toml does not load: %v", err)
	}
	if cfg.Flush.MaxDelay.D() != 4*time.Millisecond || cfg.Source(KeyMaxDelay) != config.IOProfile {
		t.Errorf("flush.max_delay %s from %s, want 4ms from io-profile", cfg.Flush.MaxDelay, cfg.Source(KeyMaxDelay))
	}
	if cfg.Log.SegmentBytes != 512<<20 || cfg.Source(KeySegmentBytes) != config.IOProfile {
		t.Errorf("log.segment_bytes %s from %s, want 512MiB from io-profile", cfg.Log.SegmentBytes, cfg.Source(KeySegmentBytes))
	}
	if cfg.Source("flush.mode") != config.BuiltIn {
		t.Errorf("flush.mode from %s; the io-profile must not set it", cfg.Source("flush.mode"))
	}

	file := filepath.Join(t.TempDir(), "eddy.toml")
	if err := os.WriteFile(file, []byte("[flush]\nmax_delay = \"7ms\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load(config.LoadOptions{IOProfile: TOMLPath(data), File: file})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Flush.MaxDelay.D() != 7*time.Millisecond || cfg.Source(KeyMaxDelay) != config.File {
		t.Errorf("file layer: flush.max_delay %s from %s, want 7ms from the file", cfg.Flush.MaxDelay, cfg.Source(KeyMaxDelay))
	}
	if cfg.Log.SegmentBytes != 512<<20 || cfg.Source(KeySegmentBytes) != config.IOProfile {
		t.Errorf("file layer: log.segment_bytes %s from %s, want the io-profile's 512MiB", cfg.Log.SegmentBytes, cfg.Source(KeySegmentBytes))
	}
	// The environment is above both.
	cfg, err = config.Load(config.LoadOptions{IOProfile: TOMLPath(data), File: file, Env: []string{"EDDY_LOG_SEGMENT_BYTES=256MiB"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.SegmentBytes != 256<<20 || cfg.Source(KeySegmentBytes) != config.Env {
		t.Errorf("env layer: log.segment_bytes %s from %s", cfg.Log.SegmentBytes, cfg.Source(KeySegmentBytes))
	}

	// io-profile.json holds the fingerprint, measurements and inputs.
	stored, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Fingerprint.Device != "sda" || stored.Fingerprint.Model != "Samsung SSD 870" || stored.Fingerprint.Kernel != ssdHost.kernel ||
		stored.Measurements == nil || stored.Measurements.SeqWriteBytesPerSec != ssdCurve.SeqWriteBytesPerSec ||
		stored.Info.RAMBytes != 4<<30 || len(stored.Settings) != len(p.Settings) {
		t.Errorf("io-profile.json: %+v", stored)
	}
}

func TestEnsureReportsProbeFailure(t *testing.T) {
	failing := func(context.Context, string, time.Duration, func(string, float64)) (Measurements, error) {
		return Measurements{}, os.ErrPermission
	}
	_, _, err := Ensure(context.Background(), t.TempDir(), EnsureOptions{Options: Options{Root: nvmeHost.build(t)}, Prober: failing})
	if err == nil || !strings.Contains(err.Error(), "ensure io-profile") || !strings.Contains(err.Error(), "permission") {
		t.Fatalf("err %v", err)
	}
}
