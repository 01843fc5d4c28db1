package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
)

func TestTuneMeasuresThisMachine(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cmd := newTuneCmd()
	var out, errw bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errw)
	cmd.SetArgs([]string{"--data-dir", data, "--budget", "2s", "--force", "--write"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("eddy tune: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errw.String())
	}
	report := out.String()
	for _, want := range []string{
		"Data directory", "Filesystem", "Kind",
		"Measured (", "sequential write", "sequential read",
		"write+fdatasync 4KiB", "write+fdatasync 1MiB",
		"growing file", "preallocated", "random 4KiB read",
		"Derived (basis: measured)",
		disk.KeySegmentBytes, disk.KeyMaxBatchBytes, disk.KeyMaxDelay, disk.KeyPreallocateBytes,
		"knee of the sync curve", // the rule that chose max_batch_bytes, or its fallback below
		"Saved ",
	} {
		if want == "knee of the sync curve" && strings.Contains(report, "no measured batch reached") {
			continue
		}
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	// Every derived key is printed with its value and rule.
	for _, line := range strings.Split(report, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (strings.HasPrefix(f[0], "flush.") || strings.HasPrefix(f[0], "log.")) && len(f) < 3 {
			t.Errorf("derived line without value and rule: %q", line)
		}
	}
	// Progress went to stderr, as plain lines (not a terminal).
	if !strings.Contains(errw.String(), "probe:") || !strings.Contains(errw.String(), "sync curve") || strings.Contains(errw.String(), "\r") {
		t.Errorf("progress on stderr:\n%q", errw.String())
	}
	// The saved profile is the io-profile layer of the configuration.
	cfg, err := config.Load(config.LoadOptions{IOProfile: disk.TOMLPath(data)})
	if err != nil {
		t.Fatalf("saved io-profile does not load: %v", err)
	}
	p, err := disk.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p.Get(disk.KeyMaxDelay)
	if got := cfg.Flush.MaxDelay.String(); got != s.Value || cfg.Source(disk.KeyMaxDelay) != config.IOProfile {
		t.Errorf("flush.max_delay %s from %s, want %s from the io-profile", got, cfg.Source(disk.KeyMaxDelay), s.Value)
	}
	if p.Measurements == nil || p.Measurements.SeqWriteBytesPerSec <= 0 {
		t.Errorf("io-profile.json lacks measurements: %+v", p.Measurements)
	}
	// Only the io-profile files remain: the probe removed its test files.
	entries, _ := os.ReadDir(data)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "io-profile.json,io-profile.toml" {
		t.Errorf("data dir holds %v", names)
	}
}

func TestTuneDoesNotWriteWithoutWrite(t *testing.T) {
	data := t.TempDir()
	var out, errw bytes.Buffer
	calls := 0
	fake := func(context.Context, string, time.Duration, func(string, float64)) (disk.Measurements, error) {
		calls++
		return disk.Measurements{ProbeVersion: disk.ProbeVersion, SeqWriteBytesPerSec: 100 << 20}, nil
	}
	if err := runTune(context.Background(), &out, &errw, tuneOptions{dataDir: data, budget: time.Second, force: true, prober: fake}); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || !strings.Contains(out.String(), "Not saved: run with --write") {
		t.Fatalf("%d probes; output:\n%s", calls, out.String())
	}
	if _, err := os.Stat(disk.TOMLPath(data)); !os.IsNotExist(err) {
		t.Fatalf("io-profile.toml written without --write: %v", err)
	}
}

func TestTuneSkipsTheProbeOnAnSDCard(t *testing.T) {
	root := t.TempDir()
	put := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	card := "sys/devices/platform/mmc_host/mmc0/mmc0:0001/block/mmcblk0"
	put("proc/self/mountinfo", "27 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw\n")
	put("proc/meminfo", "MemTotal: 1048576 kB\nMemFree: 524288 kB\n")
	put(card+"/device/type", "SD\n")
	put(card+"/mmcblk0p2/partition", "2\n")
	if err := os.MkdirAll(filepath.Join(root, "sys/dev/block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/platform/mmc_host/mmc0/mmc0:0001/block/mmcblk0/mmcblk0p2", filepath.Join(root, "sys/dev/block/179:2")); err != nil {
		t.Fatal(err)
	}
	never := func(context.Context, string, time.Duration, func(string, float64)) (disk.Measurements, error) {
		t.Fatal("the SD card was probed without --force")
		return disk.Measurements{}, nil
	}
	var out, errw bytes.Buffer
	if err := runTune(context.Background(), &out, &errw, tuneOptions{dataDir: t.TempDir(), root: root, prober: never}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Kind", "sd (wear-sensitive: true)", "not probed", "--force", "Measured: nothing", "Derived (basis: classification)", "log.segment_bytes", "64MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestServeTunesToTheDisk: with disk.tuning = "auto", the first start
// probes the data disk and saves the io-profile; `eddy config explain`
// then shows its values with their source, and a key set to "auto" in the
// configuration file keeps the profile's value.
func TestServeTunesToTheDisk(t *testing.T) {
	t.Setenv("EDDY_DISK_TUNING", "auto")
	t.Setenv("EDDY_DISK_PROBE_BUDGET", "2s")
	dir := t.TempDir()
	p := startEddy(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "io-profile.toml")); err != nil {
		t.Fatalf("no io-profile after the first start: %v\n%s", err, p.logs())
	}
	if !strings.Contains(p.logs(), `"msg":"io-profile"`) {
		t.Fatalf("the start did not log its io-profile:\n%s", p.logs())
	}
	file := filepath.Join(t.TempDir(), "eddy.toml")
	if err := os.WriteFile(file, []byte("[flush]\nmax_delay = \"auto\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", "config", "explain", "flush", "--config", file, "--data-dir", dir)
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^flush\.max_delay\s.*io-profile`).MatchString(out) {
		t.Fatalf("flush.max_delay does not come from the io-profile:\n%s", out)
	}
}
