package main

import (
	"errors"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"github.com/eddybroker/eddy/appliance/node"
)

// TestStopSignalDuringStartUp: a SIGTERM that arrives while the node
// starts cancels the start; if the start finishes all the same, the node
// comes back with the signal so the caller stops it (the signal is not
// sent twice); a start that ends in an error after the signal is a stop,
// not a failure; SIGHUP during start-up changes nothing.
func TestStopSignalDuringStartUp(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	run := func(events ...any) (*node.Node, os.Signal, error, int) {
		sigs := make(chan os.Signal, len(events))
		started := make(chan *node.Node, 1)
		errc := make(chan error, 1)
		for _, e := range events {
			switch e := e.(type) {
			case os.Signal:
				sigs <- e
			}
		}
		cancels := 0
		// The start's outcome arrives only after the signals were seen.
		cancel := func() {
			cancels++
			for _, e := range events {
				switch e := e.(type) {
				case *node.Node:
					started <- e
				case error:
					errc <- e
				}
			}
		}
		if len(sigs) == 0 || events[0] == os.Signal(syscall.SIGHUP) {
			cancel()
			cancels = 0
		}
		n, sig, err := awaitStart(sigs, started, errc, cancel, log)
		return n, sig, err, cancels
	}
	started := new(node.Node)

	n, sig, err, cancels := run(syscall.SIGTERM, started)
	if n != started || sig != syscall.SIGTERM || err != nil || cancels != 1 {
		t.Fatalf("SIGTERM, then the start finished: node %v, signal %v, err %v, %d cancels; want the node and SIGTERM, one cancel", n, sig, err, cancels)
	}
	n, sig, err, _ = run(syscall.SIGINT, errors.New("start-up interrupted: context canceled"))
	if n != nil || sig != nil || err != nil {
		t.Fatalf("SIGINT, then the start failed: node %v, signal %v, err %v; want a quiet stop", n, sig, err)
	}
	n, sig, err, _ = run(started)
	if n != started || sig != nil || err != nil {
		t.Fatalf("a plain start: node %v, signal %v, err %v", n, sig, err)
	}
	boom := errors.New("boom")
	if _, _, err, _ = run(boom); err != boom {
		t.Fatalf("a failed start: err %v, want it returned", err)
	}
	n, sig, err, _ = run(syscall.SIGHUP, started)
	if n != started || sig != nil || err != nil {
		t.Fatalf("SIGHUP during start-up: node %v, signal %v, err %v; want a normal start", n, sig, err)
	}
}
