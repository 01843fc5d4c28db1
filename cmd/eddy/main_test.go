package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// eddyBin is the real binary, built once for the tests of this package.
var eddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eddy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	eddyBin = filepath.Join(dir, "eddy")
	build := exec.Command("go", "build", "-o", eddyBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build eddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `eddy serve`.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	kafka  string
	quic   string
	admin  string
	exited chan error
	mu     sync.Mutex
	log    strings.Builder
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startEddy runs the binary on dataDir and waits for its ready line.
func startEddy(t testing.TB, dataDir string, args ...string) *proc {
	t.Helper()
	all := append([]string{"serve", "--data-dir", dataDir}, args...)
	has := func(flag string) bool {
		for _, a := range args {
			if a == flag {
				return true
			}
		}
		return false
	}
	for _, f := range []string{"--kafka-addr", "--quic-addr", "--admin-addr"} {
		if !has(f) {
			all = append(all, f, "127.0.0.1:0")
		}
	}
	cmd := exec.Command(eddyBin, all...)
	// Groups assign at once: the tests do not start members in bursts.
	cmd.Env = append(os.Environ(), "EDDY_LOGGING_FORMAT=json", "EDDY_CONFIG=", "EDDY_GROUPS_INITIAL_REBALANCE_DELAY=0s")
	if os.Getenv("EDDY_DISK_TUNING") == "" {
		// No disk probe at each start, unless a test asks for one.
		cmd.Env = append(cmd.Env, "EDDY_DISK_TUNING=off")
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, exited: make(chan error, 1)}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "eddy is ready" {
				ready <- m
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { p.exited <- cmd.Wait() }()
	select {
	case m := <-ready:
		p.kafka, _ = m["kafka"].(string)
		p.quic, _ = m["quic"].(string)
		p.admin, _ = m["admin"].(string)
	case err := <-p.exited:
		t.Fatalf("eddy exited before it was ready: %v\n%s", err, p.logs())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("eddy not ready within a minute\n%s", p.logs())
	}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// kill sends SIGKILL and waits for the process to die.
func (p *proc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.exited <- nil // keep later callers from blocking
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		return fmt.Errorf("eddy did not stop within a minute\n%s", p.logs())
	}
}

// run runs the binary with args and returns its combined output.
func run(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "EDDY_CONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
