package disk

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProbeOnThisMachine(t *testing.T) {
	dir := t.TempDir()
	// A stale file of a probe that crashed is cleaned up.
	if err := os.WriteFile(dir+"/"+probeFilePrefix+"1-seq", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	const budget = 3 * time.Second
	var steps []string
	last := -1.0
	monotonic := true
	start := time.Now()
	m, err := Probe(context.Background(), dir, budget, func(step string, frac float64) {
		if len(steps) == 0 || steps[len(steps)-1] != step {
			steps = append(steps, step)
		}
		if frac < last {
			monotonic = false
		}
		last = frac
	})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	// Each step finishes the operation in flight and runs at least three
	// of them, so allow slack on a slow disk; far beyond it is a bug.
	if elapsed > budget+10*time.Second {
		t.Errorf("probe took %s with a %s budget", elapsed, budget)
	}
	if m.SeqWriteBytesPerSec <= 0 || m.SeqWriteBytes < 8<<20 || m.SeqReadBytesPerSec <= 0 {
		t.Errorf("sequential: write %v B/s over %d B, read %v B/s", m.SeqWriteBytesPerSec, m.SeqWriteBytes, m.SeqReadBytesPerSec)
	}
	if len(m.Sync) != len(SyncSizes) {
		t.Fatalf("sync curve has %d points, want %d", len(m.Sync), len(SyncSizes))
	}
	for i, p := range m.Sync {
		if p.Bytes != SyncSizes[i] || p.Samples < 3 || p.P50 <= 0 || p.P99 < p.P50 || p.Max < p.P99 || p.BytesPerSec <= 0 {
			t.Errorf("sync point %+v", p)
		}
	}
	if m.Growing.Samples < 3 || m.Preallocated.Samples != m.Growing.Samples {
		t.Errorf("growing %d samples, preallocated %d: want >= 3 each, alternated", m.Growing.Samples, m.Preallocated.Samples)
	}
	if m.RandRead.IOPS <= 0 || m.RandRead.DeepIOPS <= 0 || (m.RandRead.Method != "o_direct" && m.RandRead.Method != "fadvise") {
		t.Errorf("random read %+v", m.RandRead)
	}
	if last != 1 || !monotonic {
		t.Errorf("progress ended at %v, monotonic %v", last, monotonic)
	}
	wantSteps := []string{"sequential write", "sync curve", "direct sync", "growing vs preallocated", "random read", "sequential read", "done"}
	if strings.Join(steps, ",") != strings.Join(wantSteps, ",") {
		t.Errorf("steps %q, want %q", steps, wantSteps)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("probe left %d files: %v", len(entries), entries)
	}
	if m.ProbeVersion != ProbeVersion || m.Budget.D() != budget || m.FileCap < minProbeFile || m.FileCap > maxProbeFile {
		t.Errorf("header: %+v", m)
	}
}

// TestProbeRefusesASecondProbeOfTheDirectory: while one probe runs, a
// second of the same directory fails at once, naming why, and leaves the
// first one's test files alone.
func TestProbeRefusesASecondProbeOfTheDirectory(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockProbe(dir)
	if err != nil {
		t.Fatal(err)
	}
	running := dir + "/" + probeFilePrefix + "1-seq"
	if err := os.WriteFile(running, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Probe(context.Background(), dir, time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "another probe of this directory is running") {
		t.Fatalf("second probe: err %v, want it refused", err)
	}
	if _, err := os.Stat(running); err != nil {
		t.Fatalf("the refused probe removed the running probe's file: %v", err)
	}
	unlock()
	// Once the first is done, a probe runs (and cleans up the file left).
	if _, err := Probe(context.Background(), dir, 500*time.Millisecond, nil); err != nil {
		t.Fatalf("probe after the lock was released: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("probe left %d files: %v", len(entries), entries)
	}
}

func TestProbeStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Probe(ctx, dir, 20*time.Second, func(step string, _ float64) {
		if step == "sync curve" {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("cancelled probe left %d files", len(entries))
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	p := summarize(1<<20, lat)
	if p.Samples != 100 || p.P50.D() != 50*time.Millisecond || p.P99.D() != 99*time.Millisecond || p.Max.D() != 100*time.Millisecond {
		t.Fatalf("%+v", p)
	}
	if want := float64(1<<20) / 0.05; p.BytesPerSec != want {
		t.Fatalf("bytes/s %v, want %v", p.BytesPerSec, want)
	}
	if lat[0] != 100*time.Millisecond {
		t.Fatal("summarize sorted its input in place")
	}
}

func TestLatencyJSON(t *testing.T) {
	l := Latency(1350 * time.Microsecond)
	b, err := l.MarshalText()
	if err != nil || string(b) != "1.35ms" {
		t.Fatalf("%s %v", b, err)
	}
	var back Latency
	if err := back.UnmarshalText(b); err != nil || back != l {
		t.Fatalf("%v %v", back, err)
	}
	if err := back.UnmarshalText([]byte("soon")); err == nil {
		t.Fatal("bad latency parsed")
	}
}
