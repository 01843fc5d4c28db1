package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeTour runs the README's 5-minute tour as written: the broker as
// `make run` starts it (default addresses, ./eddy-data in the working
// directory), then every line of the "sh tour" block through bash.
func TestReadmeTour(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(readme)))
	for sc.Scan() {
		switch l := sc.Text(); {
		case l == "```sh tour":
			in = true
		case in && l == "```":
			in = false
		case in && strings.TrimSpace(l) != "":
			lines = append(lines, l)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("the README's tour block has %d commands", len(lines))
	}
	// The tour uses the default addresses: they must be free, or the tour
	// would talk to some other broker.
	for _, a := range []string{"127.0.0.1:9092", "127.0.0.1:9644"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("the tour needs %s free (is another broker running?): %v", a, err)
		}
		ln.Close()
	}
	// The working directory as after a clone and `make run`: bin/eddy and
	// the broker's data directory.
	wd := t.TempDir()
	if err := os.MkdirAll(filepath.Join(wd, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(eddyBin, filepath.Join(wd, "bin", "eddy")); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(eddyBin, "serve")
	srv.Dir = wd
	srv.Env = append(os.Environ(), "EDDY_LOGGING_FORMAT=json", "EDDY_CONFIG=")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	script := "set -euo pipefail\nfor i in $(seq 1 400); do curl -sf http://127.0.0.1:9644/readyz >/dev/null && break; sleep 0.1; done\n" + strings.Join(lines, "\n") + "\n"
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "EDDY_CONFIG=", "EDDY_BROKERS=", "EDDY_TRANSPORT=")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the tour did not finish in two minutes")
	}
	if err != nil {
		t.Fatalf("the tour failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"ready",
		"created topic orders with 3 partitions",
		"produced 2 records to orders",
		"0\t0\t", "first order", "second order",
		"1 0 user-7 third order, from kcat",
		"0 1  second order",
		"topic orders",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out)
		}
	}
}
