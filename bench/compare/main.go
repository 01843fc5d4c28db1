// Command compare measures Eddy on one machine in one run: against NATS
// JetStream at equal and at relaxed durability, against the machine's
// ceilings (sequential fdatasync'd writes to the data disk, TCP+TLS and raw
// quic-go on loopback), and along scale curves (partitions, record size,
// producers, memory, start-up and recovery time against data size).
//
// Eddy runs as the real binary, built from the repository, with a
// generated configuration in a temporary data directory, and is driven by
// `eddy bench produce|e2e --json`. JetStream runs as nats-server (installed
// into bench/.bin when missing) with one file-store stream of one replica,
// driven by nats.go with asynchronous publishing. The contenders of each
// comparison take turns (A B A B ...), and every figure is the median of
// -runs runs, with the minimum and maximum beside it.
//
// The report is written as markdown (docs/bench/compare.md) and PNG plots
// (docs/bench/*.png), and printed on stdout. From the repository root:
//
//	make compare                          # everything, about 15 minutes on 2 cores
//	make compare COMPARE_FLAGS=-quick     # a short run of every part
//	cd bench && go run ./compare -help    # every flag
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// options are the command-line flags.
type options struct {
	quick          bool
	runs           int
	duration       time.Duration
	peers          bool
	ceilings       bool
	latency        bool
	peerSizes      []int
	peerProducers  []int
	partitions     []int
	sizes          []int
	producers      []int
	dataSizes      []int64
	curveProducers int
	curvePartition int
	inflight       int
	work           string
	out            string
	natsServer     string
	eddyBin        string
	keep           bool
}

// natsVersion is the nats-server installed when none is given.
const natsVersion = "v2.15.2"

func main() {
	if len(os.Args) == 2 && os.Args[1] == echoArg {
		if err := echoServer(); err != nil {
			fmt.Fprintln(os.Stderr, "compare: echo server:", err)
			os.Exit(1)
		}
		return
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("compare: ")
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	o := &options{}
	var peerSizes, peerProducers, partitions, sizes, producers, dataSizes string
	fs.BoolVar(&o.quick, "quick", false, "a short run of every part: 1 run of 1s each, small dimensions (explicit flags still apply)")
	fs.IntVar(&o.runs, "runs", 3, "runs of each measurement; the report shows their median, min and max")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "length of each throughput run")
	fs.BoolVar(&o.peers, "peers", true, "compare with NATS JetStream")
	fs.BoolVar(&o.ceilings, "ceilings", true, "measure the disk, TCP+TLS and QUIC ceilings")
	fs.BoolVar(&o.latency, "latency", true, "measure latency at half the maximum throughput")
	fs.StringVar(&peerSizes, "peer-sizes", "100,1KiB", "record sizes of the JetStream comparison")
	fs.StringVar(&peerProducers, "peer-producers", "1,4", "producer counts of the JetStream comparison")
	fs.StringVar(&partitions, "partitions", "1,10,100,1000,10000", "partition counts of the partitions curve and memory figures (empty: skip)")
	fs.StringVar(&sizes, "sizes", "100,1KiB,4KiB,16KiB,64KiB", "record sizes of the record-size curve (empty: skip)")
	fs.StringVar(&producers, "producers", "1,2,4,8,16", "producer counts of the producers curve (empty: skip)")
	fs.StringVar(&dataSizes, "data-sizes", "1GiB,10GiB", "data sizes of the start-up and recovery figures (empty: skip)")
	fs.IntVar(&o.curveProducers, "curve-producers", 4, "producers of the partitions and record-size curves and of the disk comparison")
	fs.IntVar(&o.curvePartition, "curve-partitions", 1, "partitions of the record-size and producers curves")
	fs.IntVar(&o.inflight, "inflight", 10000, "records a producer may have unacknowledged (Eddy --max-buffered-records, JetStream max pending)")
	fs.StringVar(&o.work, "work", "", "directory for the data directories, on the disk to measure (default: bench/.work)")
	fs.StringVar(&o.out, "out", "", "directory of compare.md and the plots (default: docs/bench in the repository)")
	fs.StringVar(&o.natsServer, "nats-server", "", "nats-server binary (default: bench/.bin/nats-server, installed with go install when missing)")
	fs.StringVar(&o.eddyBin, "eddy", "", "eddy binary to measure (default: built from the repository into bench/.bin/eddy)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"runs":           func() { o.runs = 1 },
			"duration":       func() { o.duration = time.Second },
			"peer-sizes":     func() { peerSizes = "1KiB" },
			"peer-producers": func() { peerProducers = "1" },
			"partitions":     func() { partitions = "1,100" },
			"sizes":          func() { sizes = "100,4KiB" },
			"producers":      func() { producers = "1,2" },
			"data-sizes":     func() { dataSizes = "64MiB" },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var errs []error
	list := func(name, v string, dst *[]int, sizes bool) {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			var n int64
			var err error
			if sizes {
				n, err = parseSize(f)
			} else {
				n, err = strconv.ParseInt(f, 10, 32)
			}
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("-%s %q: %q is not a positive %s", name, v, f, map[bool]string{true: "size", false: "integer"}[sizes]))
				continue
			}
			*dst = append(*dst, int(n))
		}
	}
	list("peer-sizes", peerSizes, &o.peerSizes, true)
	list("peer-producers", peerProducers, &o.peerProducers, false)
	list("partitions", partitions, &o.partitions, false)
	list("sizes", sizes, &o.sizes, true)
	list("producers", producers, &o.producers, false)
	var ds []int
	list("data-sizes", dataSizes, &ds, true)
	for _, d := range ds {
		o.dataSizes = append(o.dataSizes, int64(d))
	}
	if o.runs < 1 {
		errs = append(errs, fmt.Errorf("-runs %d: want at least 1", o.runs))
	}
	if o.duration < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("-duration %s: want at least 100ms", o.duration))
	}
	if o.curveProducers < 1 || o.curvePartition < 1 || o.inflight < 1 {
		errs = append(errs, fmt.Errorf("-curve-producers %d, -curve-partitions %d, -inflight %d: want at least 1 each", o.curveProducers, o.curvePartition, o.inflight))
	}
	for _, s := range append(append([]int{}, o.peerSizes...), o.sizes...) {
		if s > 512<<10 {
			errs = append(errs, fmt.Errorf("record size %d: at most 512KiB", s))
		}
	}
	return o, errors.Join(errs...)
}

// parseSize parses a byte count with an optional unit: 100, 1KiB, 10GiB,
// 1MB.
func parseSize(s string) (int64, error) {
	units := []struct {
		name string
		mult int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.name); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n * mult, nil
}

// run measures everything asked for and writes the report.
func run(o *options) error {
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.cleanup()
	begin := time.Now()
	if err := h.buildEddy(); err != nil {
		return err
	}
	if o.peers {
		if err := h.installNATS(); err != nil {
			h.rep.note("JetStream comparison skipped: %v", err)
			o.peers = false
		}
	}
	phases := []struct {
		on   bool
		name string
		fn   func() error
	}{
		{o.peers, "Eddy and JetStream", h.peerPhase},
		{o.ceilings, "ceilings", h.ceilingPhase},
		{o.latency, "latency at half the maximum throughput", h.latencyPhase},
		{len(o.partitions) > 0, "partitions curve and memory", h.partitionsPhase},
		{len(o.sizes) > 0 || len(o.producers) > 0, "record-size and producers curves", h.curvesPhase},
		{len(o.dataSizes) > 0, "start-up and recovery", h.startupPhase},
	}
	for _, p := range phases {
		if !p.on {
			continue
		}
		log.Printf("== %s", p.name)
		t := time.Now()
		if err := p.fn(); err != nil {
			h.rep.note("%s: %v", p.name, err)
			log.Printf("%s failed: %v", p.name, err)
		}
		log.Printf("== %s took %s", p.name, time.Since(t).Round(time.Second))
	}
	h.rep.took = time.Since(begin)
	if err := os.MkdirAll(h.out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	plots, err := h.rep.plots(h.out)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	md := h.rep.markdown(plots)
	mdPath := filepath.Join(h.out, "compare.md")
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", mdPath, err)
	}
	fmt.Print(md)
	log.Printf("wrote %s and %d plots in %s (%s in all)", mdPath, len(plots), h.out, time.Since(begin).Round(time.Second))
	return nil
}
