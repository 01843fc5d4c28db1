package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// peerPhase compares Eddy with JetStream: every record size and producer
// count, at equal durability (Eddy's group commit with acks=all, JetStream
// with sync_interval: always) and relaxed (Eddy's flush.mode = "os",
// JetStream's defaults). Four servers run side by side and take turns.
func (h *harness) peerPhase() error {
	ed, err := h.newEddy("peer-eddy-durable", "group")
	if err != nil {
		return err
	}
	defer h.retire(ed)
	er, err := h.newEddy("peer-eddy-relaxed", "os")
	if err != nil {
		return err
	}
	defer h.retire(er)
	nd, err := h.startNATS("peer-nats-durable", true)
	if err != nil {
		return err
	}
	defer nd.stop()
	nr, err := h.startNATS("peer-nats-relaxed", false)
	if err != nil {
		return err
	}
	defer nr.stop()
	for _, size := range h.o.peerSizes {
		for _, p := range h.o.peerProducers {
			eddy := func(s *eddyServer) func() (measure, error) {
				return func() (measure, error) { return h.eddyProduce(s, "tcp", size, p, 1, "--acks", "all") }
			}
			js := func(s *natsServer) func() (measure, error) {
				return func() (measure, error) { return natsProduce(s.url, size, p, h.o.duration, h.o.inflight) }
			}
			res := h.alternate(fmt.Sprintf("%s, %s", sizeName(size), plural(p, "producer")), []contender{
				{"Eddy durable", eddy(ed)}, {"JetStream durable", js(nd)},
				{"Eddy relaxed", eddy(er)}, {"JetStream relaxed", js(nr)},
			})
			h.rep.peers = append(h.rep.peers, peerRow{
				Size: size, Producers: p,
				EddyDurable: res["Eddy durable"], NATSDurable: res["JetStream durable"],
				EddyRelaxed: res["Eddy relaxed"], NATSRelaxed: res["JetStream relaxed"],
			})
		}
	}
	return nil
}

// retire stops a node and removes its data.
func (h *harness) retire(s *eddyServer) {
	if err := s.stop(); err != nil {
		h.rep.note("stop eddy: %v", err)
	}
	os.RemoveAll(filepath.Dir(s.dir))
}

// ceilingPhase measures each ceiling in turn with the Eddy figure it
// bounds: the disk with durable 1 KiB produce, raw QUIC with produce over
// QUIC, TCP+TLS with produce over TCP (both relaxed, so that the
// transport and not the disk is the limit, with one producer: one
// connection, like the ceiling's one stream).
func (h *harness) ceilingPhase() error {
	id, err := h.ceilingIdentity()
	if err != nil {
		return err
	}
	ed, err := h.newEddy("ceiling-eddy-durable", "group")
	if err != nil {
		return err
	}
	defer h.retire(ed)
	er, err := h.newEddy("ceiling-eddy-relaxed", "os")
	if err != nil {
		return err
	}
	defer h.retire(er)
	d := h.o.duration
	cp := h.o.curveProducers
	rows := []struct {
		short, ceiling, eddy string
		cfn, efn             func() (measure, error)
	}{
		{"disk", "disk: 1 MiB write + fdatasync", fmt.Sprintf("Eddy durable, 1 KiB, %s", plural(cp, "producer")),
			func() (measure, error) { return diskCeiling(filepath.Dir(ed.dir), d) },
			func() (measure, error) { return h.eddyProduce(ed, "tcp", 1024, cp, 1) }},
		{"QUIC", "raw quic-go, one stream", "Eddy over QUIC, relaxed, 1 KiB, 1 producer",
			func() (measure, error) { return quicCeiling(id, d) },
			func() (measure, error) { return h.eddyProduce(er, "quic", 1024, 1, 1) }},
		{"TCP+TLS", "TCP + TLS 1.3, one connection", "Eddy over TCP, relaxed, 1 KiB, 1 producer",
			func() (measure, error) { return tlsCeiling(id, d) },
			func() (measure, error) { return h.eddyProduce(er, "tcp", 1024, 1, 1) }},
	}
	for _, r := range rows {
		res := h.alternate(r.ceiling, []contender{{r.ceiling, r.cfn}, {r.eddy, r.efn}})
		h.rep.ceilings = append(h.rep.ceilings, ceilRow{Short: r.short, Ceiling: r.ceiling, Eddy: r.eddy, CeilingRuns: res[r.ceiling], EddyRuns: res[r.eddy]})
	}
	return nil
}

// latencyPhase finds the maximum durable produce rate of one producer of
// 1 KiB records and measures produce latency open-loop at half of it;
// likewise for end to end, at half the consumed rate of a closed-loop run
// (a consumer fed faster than it reads measures its growing backlog, not
// latency). The machine's floor at the produce rate (loopbackFloor) takes
// turns with them.
func (h *harness) latencyPhase() error {
	s, err := h.newEddy("latency", "group")
	if err != nil {
		return err
	}
	defer h.retire(s)
	maxRuns := h.alternate("closed loop", []contender{{"max", func() (measure, error) { return h.eddyProduce(s, "tcp", 1024, 1, 1) }}})["max"]
	if len(maxRuns) == 0 {
		return errors.New("no closed-loop run succeeded")
	}
	e2e := func(rate float64) func() (measure, error) {
		return func() (measure, error) {
			args := []string{"--duration", h.o.duration.String(), "--record-size", "1024", "--max-buffered-records", strconv.Itoa(h.o.inflight)}
			if rate > 0 {
				args = append(args, "--rate", strconv.FormatFloat(rate, 'f', 0, 64))
			}
			topic := h.nextTopic("latency")
			res, err := h.eddyBench(s, "tcp", "e2e", append(args, "--topic", topic)...)
			if derr := h.deleteTopic(s, topic); err == nil {
				err = derr
			}
			if err != nil {
				return measure{}, err
			}
			return res.Consume.measure(), nil
		}
	}
	e2eMax := h.alternate("end to end, closed loop", []contender{{"max", e2e(0)}})["max"]
	if len(e2eMax) == 0 {
		return errors.New("no closed-loop end-to-end run succeeded")
	}
	lr := &latencyResult{Max: maxRuns, E2EMax: e2eMax}
	lr.Rate = statOf(maxRuns, func(m measure) float64 { return m.RecPerS }).Med / 2
	lr.E2ERate = statOf(e2eMax, func(m measure) float64 { return m.RecPerS }).Med / 2
	rate := strconv.FormatFloat(lr.Rate, 'f', 0, 64)
	open := func(mode string) func() (measure, error) {
		if mode == "e2e" {
			return e2e(lr.E2ERate)
		}
		return func() (measure, error) {
			topic := h.nextTopic("latency")
			res, err := h.eddyBench(s, "tcp", mode, "--topic", topic, "--rate", rate, "--duration", h.o.duration.String(),
				"--record-size", "1024", "--max-buffered-records", strconv.Itoa(h.o.inflight))
			if derr := h.deleteTopic(s, topic); err == nil {
				err = derr
			}
			if err != nil {
				return measure{}, err
			}
			if mode == "e2e" {
				return res.Consume.measure(), nil
			}
			return res.Produce.measure(), nil
		}
	}
	floor := func() (measure, error) { return loopbackFloor(lr.Rate, 1024, h.o.duration) }
	res := h.alternate("at half the maximum rate", []contender{{"produce", open("produce")}, {"e2e", open("e2e")}, {"floor", floor}})
	lr.Produce, lr.E2E, lr.Floor = res["produce"], res["e2e"], res["floor"]
	h.rep.latency = lr
	return nil
}

// partitionsPhase measures, for each partition count on a fresh node, the
// time to create the topic and write a record to each partition, the
// node's memory when idle, and 1 KiB produce throughput with keys spread
// over every partition and without keys, with the memory peak under that
// load.
func (h *harness) partitionsPhase() error {
	// Rows above one partition take turns with a 1-partition topic on a
	// node of its own, so that each ratio compares runs made minutes,
	// and so periods of this machine, apart no more than its two sides.
	var base *eddyServer
	if slices.ContainsFunc(h.o.partitions, func(n int) bool { return n > 1 }) {
		s, err := h.newEddy("partitions-base", "group")
		if err != nil {
			return err
		}
		defer h.retire(s)
		base = s
	}
	for _, n := range h.o.partitions {
		pt := partPoint{Partitions: n}
		b := base
		if n == 1 {
			b = nil
		}
		if err := h.partitionsPoint(&pt, b); err != nil {
			pt.Err = err.Error()
			h.rep.note("%s: %v", plural(n, "partition"), err)
			log.Printf("%s: %v", plural(n, "partition"), err)
		}
		h.rep.parts = append(h.rep.parts, pt)
	}
	return nil
}

// partitionsPoint measures one row of the partitions curve on a fresh
// node; with base, each of its runs takes turns with the same workload
// on a new 1-partition topic of base (deleted after the run).
func (h *harness) partitionsPoint(pt *partPoint, base *eddyServer) error {
	n := pt.Partitions
	s, err := h.newEddy(fmt.Sprintf("partitions-%d", n), "group")
	if err != nil {
		return err
	}
	defer h.retire(s)
	// Create the topic and write one record to each partition, so that
	// every partition is open before the node is called idle.
	begin := time.Now()
	if _, err := h.eddyBench(s, "tcp", "produce", "--topic", "partitions", "--partitions", strconv.Itoa(n),
		"--records", strconv.Itoa(n), "--partitioner", "round-robin", "--record-size", "100", "--timeout", "5m"); err != nil {
		return fmt.Errorf("create a topic of %s and write to each: %w", plural(n, "partition"), err)
	}
	pt.CreateSec = time.Since(begin).Seconds()
	// Let start-up and creation garbage be collected before reading the
	// idle size.
	time.Sleep(2 * time.Second)
	if pt.IdleRSS, err = s.rss(); err != nil {
		return err
	}
	log.Printf("%s: created and written in %.2fs, idle RSS %.1f MiB", plural(n, "partition"), pt.CreateSec, float64(pt.IdleRSS)/(1<<20))
	keys := func(n int) string { return strconv.Itoa(max(100*n, 1000)) }
	// Two workloads take turns: keyed records, a batch per partition
	// in each request (one or a few records each with many partitions),
	// and records without keys, which franz-go's default partitioner
	// sends in batches of up to 64 KiB to one partition at a time.
	produce := func(srv *eddyServer, n int, keyed bool) func() (measure, error) {
		row := srv == s
		return func() (measure, error) {
			topic := "partitions"
			if !row {
				topic = h.nextTopic("partitions-base")
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if row {
				wg.Go(func() {
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						if rss, err := s.rss(); err == nil && rss > pt.LoadRSS {
							pt.LoadRSS = rss
						}
						select {
						case <-stop:
							return
						case <-t.C:
						}
					}
				})
			}
			args := []string{"--topic", topic, "--partitions", strconv.Itoa(n),
				"--duration", h.o.duration.String(), "--record-size", "1024", "--producers", strconv.Itoa(h.o.curveProducers),
				"--max-buffered-records", strconv.Itoa(h.o.inflight)}
			if keyed {
				args = append(args, "--keys", keys(n))
			}
			res, err := h.eddyBench(srv, "tcp", "produce", args...)
			close(stop)
			wg.Wait()
			if !row {
				if derr := h.deleteTopic(srv, topic); err == nil {
					err = derr
				}
			}
			if err != nil {
				return measure{}, err
			}
			return res.Produce.measure(), nil
		}
	}
	cs := []contender{{"keyed", produce(s, n, true)}, {"unkeyed", produce(s, n, false)}}
	if base != nil {
		cs = []contender{{"1 partition, keyed", produce(base, 1, true)}, cs[0], {"1 partition, unkeyed", produce(base, 1, false)}, cs[1]}
	}
	res := h.alternate(plural(n, "partition"), cs)
	pt.Runs, pt.Unkeyed = res["keyed"], res["unkeyed"]
	// Ratios pair the runs of one round; alternate drops a failed run,
	// so a workload pairs only when every round of both sides succeeded.
	paired := func(runs, base []measure) []measure {
		if len(runs) != h.o.runs || len(base) != h.o.runs {
			if base != nil {
				h.rep.note("%s: a run failed, so the ratio is to the 1-partition row", plural(n, "partition"))
			}
			return nil
		}
		return base
	}
	pt.Base = paired(pt.Runs, res["1 partition, keyed"])
	pt.UnkeyedBase = paired(pt.Unkeyed, res["1 partition, unkeyed"])
	return nil
}

// curvesPhase measures durable produce throughput against the record size
// and against the number of producers, on one node; the points of a curve
// take turns.
func (h *harness) curvesPhase() error {
	s, err := h.newEddy("curves", "group")
	if err != nil {
		return err
	}
	defer h.retire(s)
	curve := func(name string, xs []int, fn func(x int) (measure, error)) []curvePoint {
		var cs []contender
		for _, x := range xs {
			cs = append(cs, contender{strconv.Itoa(x), func() (measure, error) { return fn(x) }})
		}
		res := h.alternate(name, cs)
		var pts []curvePoint
		for _, x := range xs {
			pts = append(pts, curvePoint{X: x, Runs: res[strconv.Itoa(x)]})
		}
		return pts
	}
	if len(h.o.sizes) > 0 {
		h.rep.sizes = curve("record size", h.o.sizes, func(size int) (measure, error) {
			return h.eddyProduce(s, "tcp", size, h.o.curveProducers, h.o.curvePartition)
		})
	}
	if len(h.o.producers) > 0 {
		h.rep.producers = curve("producers", h.o.producers, func(p int) (measure, error) {
			return h.eddyProduce(s, "tcp", 1024, p, h.o.curvePartition)
		})
	}
	return nil
}

// startupPhase fills a node with each data size, then times start-up
// after a clean shutdown and recovery after kill -9 (following a short
// burst of produce), from exec to the ready log line. The page cache is
// left as it is (warm).
func (h *harness) startupPhase() error {
	for _, size := range h.o.dataSizes {
		sp := startPoint{Bytes: size}
		if err := h.startupPoint(&sp); err != nil {
			sp.Err = err.Error()
			h.rep.note("start-up with %s: %v", bytesName(size), err)
			log.Printf("start-up with %s: %v", bytesName(size), err)
		}
		h.rep.startup = append(h.rep.startup, sp)
	}
	return nil
}

func (h *harness) startupPoint(sp *startPoint) error {
	const recordSize = 64 << 10
	s, err := h.newEddy("startup-"+bytesName(sp.Bytes), "os")
	if err != nil {
		return err
	}
	dataDir, conf := s.dir, s.conf
	defer func() {
		if s != nil {
			s.kill()
		}
		os.RemoveAll(filepath.Dir(dataDir))
	}()
	records := max(sp.Bytes/recordSize, 16)
	fill := []string{"--topic", "fill", "--partitions", "8", "--record-size", strconv.Itoa(recordSize), "--acks", "1",
		"--max-buffered-records", "512", "--timeout", "2m"}
	log.Printf("filling a node with %s", bytesName(sp.Bytes))
	res, err := h.eddyBench(s, "tcp", "produce", append(fill, "--records", strconv.FormatInt(records, 10), "--producers", "2")...)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	sp.FillMBps = res.Produce.MBPerS
	if err := s.stop(); err != nil {
		return err
	}
	s = nil
	for r := 0; r < h.o.runs; r++ {
		if s, err = h.startEddy(dataDir, conf); err != nil {
			return fmt.Errorf("start after a clean shutdown: %w", err)
		}
		sp.Startup = append(sp.Startup, s.readyIn.Seconds())
		log.Printf("%s: ready %.3fs after a clean shutdown", bytesName(sp.Bytes), s.readyIn.Seconds())
		if err := s.stop(); err != nil {
			return err
		}
		s = nil
	}
	if s, err = h.startEddy(dataDir, conf); err != nil {
		return err
	}
	burst := min(h.o.duration, time.Second).String()
	for r := 0; r < h.o.runs; r++ {
		if _, err := h.eddyBench(s, "tcp", "produce", append(fill, "--duration", burst)...); err != nil {
			return fmt.Errorf("produce before kill -9: %w", err)
		}
		s.kill()
		if s, err = h.startEddy(dataDir, conf); err != nil {
			return fmt.Errorf("start after kill -9: %w", err)
		}
		sp.Recovery = append(sp.Recovery, s.readyIn.Seconds())
		log.Printf("%s: ready %.3fs after kill -9", bytesName(sp.Bytes), s.readyIn.Seconds())
	}
	return nil
}

// sizeName prints a record size: 100 B, 1 KiB, 64 KiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// bytesName prints a data size without spaces: 64MiB, 10GiB.
func bytesName(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
