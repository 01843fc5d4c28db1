package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// echoArg, as the only argument, makes the program the echo server of
// the latency floor instead of the harness.
const echoArg = "-loopback-echo-server"

// floorInflight is how many writes the floor keeps unanswered, as an
// idempotent Kafka producer keeps at most five requests in flight.
const floorInflight = 5

// echoServer listens on loopback, prints its address, and answers each
// length-prefixed message of its one connection with the 4-byte prefix
// once the whole message is read.
func echoServer() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 1<<20)
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if _, err := r.Discard(int(binary.BigEndian.Uint32(hdr))); err != nil {
			return err
		}
		if _, err := c.Write(hdr); err != nil {
			return err
		}
	}
}

// loopbackFloor measures what the latency runs pay before any broker
// work: records of size bytes at rate records/s for d, paced and timed
// like `eddy bench produce --rate` (from each record's scheduled send),
// sent by this process to an echo server in another process over
// loopback TCP. Each write carries every record due, at most
// floorInflight writes are unanswered (later records wait, as in a
// producer), and a record counts as acknowledged when the server's
// answer to its write arrives. The records are neither encoded, stored
// nor synced: the figure is the machine's floor at that load (process
// scheduling, loopback, timers), not a broker's.
func loopbackFloor(rate float64, size int, d time.Duration) (measure, error) {
	self, err := os.Executable()
	if err != nil {
		return measure{}, fmt.Errorf("latency floor: %w", err)
	}
	cmd := exec.Command(self, echoArg)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return measure{}, fmt.Errorf("latency floor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return measure{}, fmt.Errorf("latency floor: start the echo server: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return measure{}, fmt.Errorf("latency floor: read the echo server's address: %w", err)
	}
	c, err := net.Dial("tcp", strings.TrimSpace(addr))
	if err != nil {
		return measure{}, fmt.Errorf("latency floor: %w", err)
	}
	defer c.Close()

	start := time.Now().Add(10 * time.Millisecond)
	interval := float64(time.Second) / rate
	total := int(rate * d.Seconds())
	intended := func(i int) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	type write struct{ first, n int }
	writes := make(chan write, floorInflight)
	slots := make(chan struct{}, floorInflight) // one per unanswered write
	failed := make(chan struct{})
	lats := newLatencyHist()
	readErr := make(chan error, 1)
	go func() {
		ack := make([]byte, 4)
		for w := range writes {
			if _, err := io.ReadFull(c, ack); err != nil {
				readErr <- fmt.Errorf("latency floor: read an answer: %w", err)
				close(failed)
				return
			}
			<-slots
			now := time.Now()
			for i := w.first; i < w.first+w.n; i++ {
				recordLatency(lats, now.Sub(intended(i)))
			}
		}
		readErr <- nil
	}()
	buf := make([]byte, 4, 4+size)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; i < total; {
		if wait := time.Until(intended(i)); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		select {
		case slots <- struct{}{}: // waits while floorInflight are unanswered
		case <-failed:
			return measure{}, <-readErr
		}
		now := time.Now()
		j := i + 1
		for j < total && !intended(j).After(now) {
			j++
		}
		n := (j - i) * size
		buf = slices.Grow(buf[:4], n)[:4+n]
		binary.BigEndian.PutUint32(buf, uint32(n))
		writes <- write{i, j - i}
		if _, err := c.Write(buf); err != nil {
			return measure{}, fmt.Errorf("latency floor: write: %w", err)
		}
		i = j
	}
	close(writes)
	if err := <-readErr; err != nil {
		return measure{}, err
	}
	el := time.Since(start).Seconds()
	return histMeasure(lats, float64(total*size)/el/1e6, float64(total)/el), nil
}

// newLatencyHist is a histogram of latencies in microseconds, from 1 µs
// to an hour at three significant digits, the one every latency of the
// report goes through.
func newLatencyHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
}

// recordLatency adds d to h, clamped to its range.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(d.Microseconds(), 1), h.HighestTrackableValue()))
}

// histMeasure is a measure with h's percentiles in milliseconds.
func histMeasure(h *hdrhistogram.Histogram, mbps, recps float64) measure {
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	return measure{MBps: mbps, RecPerS: recps, P50: ms(50), P99: ms(99), P999: ms(99.9), MaxLat: float64(h.Max()) / 1000}
}
