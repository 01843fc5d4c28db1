package main

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestServeSpeaksSystemdNotify runs `eddy serve` as systemd would, with
// NOTIFY_SOCKET and WATCHDOG_USEC, on a data directory left by kill -9:
// STATUS lines report the recovery, READY=1 comes only after it, watchdog
// pings follow, and SIGTERM brings STOPPING=1 and a clean exit.
func TestServeSpeaksSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	p := startEddy(t, dir)
	var in strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&in, "record %d\n", i)
	}
	for _, topic := range []string{"a", "b"} {
		if out, err := run(t, "", "topic", "create", topic, "--partitions", "2", "--brokers", p.kafka, "--transport", "tcp"); err != nil {
			t.Fatalf("create: %v\n%s", err, out)
		}
		if out, err := run(t, in.String(), "produce", topic, "--brokers", p.kafka, "--transport", "tcp"); err != nil {
			t.Fatalf("produce: %v\n%s", err, out)
		}
	}
	p.kill() // no clean-shutdown marker: the next start recovers

	sockPath := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var msgs []string
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, string(buf[:k]))
			mu.Unlock()
		}
	}()
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), msgs...)
	}
	t.Setenv("NOTIFY_SOCKET", sockPath)
	t.Setenv("WATCHDOG_USEC", "900000")
	p = startEddy(t, dir)
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(strings.Join(got(), "\n"), "WATCHDOG=1") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no watchdog pings; messages: %q", got())
		}
		<-time.After(50 * time.Millisecond)
	}
	all := got()
	ready := -1
	for i, m := range all {
		if strings.HasPrefix(m, "READY=1") {
			ready = i
			break
		}
	}
	if ready < 0 {
		t.Fatalf("no READY=1: %q", all)
	}
	before := strings.Join(all[:ready], "\n")
	// The 4 partitions of a and b and those of __consumer_offsets.
	if m := regexp.MustCompile(`STATUS=recovering (\d+)/(\d+) partitions\nEXTEND_TIMEOUT_USEC=\d+`).FindAllStringSubmatch(before, -1); len(m) < 4 || m[len(m)-1][1] != m[len(m)-1][2] {
		t.Fatalf("before READY=1 no complete recovery progress: %q", all[:ready])
	}
	if !regexp.MustCompile(`STATUS=ready: 2 topics, 4 partitions; data disk \d+% used`).MatchString(all[ready]) {
		t.Fatalf("READY=1 message %q", all[ready])
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("eddy exited with %v after SIGTERM\n%s", err, p.logs())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("eddy did not stop within a minute of SIGTERM")
	}
	if !strings.Contains(strings.Join(got(), "\n"), "STOPPING=1") {
		t.Fatalf("no STOPPING=1: %q", got())
	}
}
