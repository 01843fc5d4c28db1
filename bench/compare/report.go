package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report collects the figures of a run.
type report struct {
	o           *options
	started     time.Time
	took        time.Duration
	workDir     string
	workFS      string
	eddyVersion string
	commit      string // of the repository the eddy binary was built from
	natsVersion string
	peers       []peerRow
	ceilings    []ceilRow
	latency     *latencyResult
	parts       []partPoint
	sizes       []curvePoint
	producers   []curvePoint
	startup     []startPoint
	notes       []string
}

type peerRow struct {
	Size, Producers          int
	EddyDurable, NATSDurable []measure
	EddyRelaxed, NATSRelaxed []measure
}

type ceilRow struct {
	Short, Ceiling, Eddy  string
	CeilingRuns, EddyRuns []measure
}

type latencyResult struct {
	Max          []measure // produce, closed loop
	Rate         float64   // records/s of the open-loop produce runs
	E2EMax       []measure // consumption while the producer runs closed loop
	E2ERate      float64   // records/s of the open-loop end-to-end runs
	Produce, E2E []measure
	Floor        []measure // loopbackFloor at Rate
}

type partPoint struct {
	Partitions int
	CreateSec  float64
	IdleRSS    int64
	LoadRSS    int64
	Runs       []measure // keyed over every partition
	Unkeyed    []measure // no keys: franz-go's sticky batches
	// Base and UnkeyedBase are the same workloads on a 1-partition topic,
	// each run taking turns with the row's (rows above 1 partition).
	Base, UnkeyedBase []measure
	Err               string
}

// pairedRatio is the median [min–max] of the per-round ratios of runs to
// base (run i of each from round i); ok is false when they do not pair.
func pairedRatio(runs, base []measure) (s stat, ok bool) {
	if len(runs) == 0 || len(runs) != len(base) {
		return stat{}, false
	}
	rs := make([]float64, len(runs))
	for i := range runs {
		if base[i].MBps == 0 {
			return stat{}, false
		}
		rs[i] = runs[i].MBps / base[i].MBps
	}
	return statVals(rs), true
}

type curvePoint struct {
	X    int
	Runs []measure
}

type startPoint struct {
	Bytes    int64
	FillMBps float64
	Startup  []float64 // seconds
	Recovery []float64
	Err      string
}

func newReport(o *options) *report { return &report{o: o, started: time.Now()} }

// plural prints n with the noun, plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// note records a problem to show in the report.
func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// stat is the median, minimum and maximum of some runs.
type stat struct {
	Med, Min, Max float64
	N             int
}

func statOf(ms []measure, f func(measure) float64) stat {
	vals := make([]float64, len(ms))
	for i, m := range ms {
		vals[i] = f(m)
	}
	return statVals(vals)
}

func statVals(vals []float64) stat {
	if len(vals) == 0 {
		return stat{}
	}
	v := slices.Clone(vals)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{Med: med, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

func mbps(m measure) float64  { return m.MBps }
func recps(m measure) float64 { return m.RecPerS }
func p50(m measure) float64   { return m.P50 }
func p99(m measure) float64   { return m.P99 }
func p999(m measure) float64  { return m.P999 }
func maxl(m measure) float64  { return m.MaxLat }

// fmtStat prints "median [min–max]" with the given precision, or "—".
func fmtStat(s stat, prec int) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.*f", prec, s.Med)
	}
	return fmt.Sprintf("%.*f [%.*f–%.*f]", prec, s.Med, prec, s.Min, prec, s.Max)
}

// ratio prints a/b, or "—".
func ratio(a, b stat) string {
	if a.N == 0 || b.N == 0 || b.Med == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a.Med/b.Med)
}

// target is one row of the targets table.
type target struct {
	what, goal, measured, value string
	met                         string // "yes", "no" or "not measured"
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// peerAt returns the comparison row of a record size at the largest
// producer count measured.
func (r *report) peerAt(size int) *peerRow {
	var best *peerRow
	for i := range r.peers {
		p := &r.peers[i]
		if p.Size == size && (best == nil || p.Producers > best.Producers) {
			best = p
		}
	}
	return best
}

func (r *report) ceiling(short string) *ceilRow {
	for i := range r.ceilings {
		if r.ceilings[i].Short == short {
			return &r.ceilings[i]
		}
	}
	return nil
}

// latencyFloors describes the floors measured in this run under the
// produce latency target: the disk's 1 MiB sync and the loopback floor at
// the same rate (p99 medians); empty when neither ran.
func (r *report) latencyFloors() string {
	var fs []string
	if c := r.ceiling("disk"); c != nil && len(c.CeilingRuns) > 0 {
		fs = append(fs, fmt.Sprintf("the disk's 1 MiB write+fdatasync p99 %.2f ms", statOf(c.CeilingRuns, p99).Med))
	}
	if r.latency != nil && len(r.latency.Floor) > 0 {
		fs = append(fs, fmt.Sprintf("the loopback floor at this rate p99 %.2f ms", statOf(r.latency.Floor, p99).Med))
	}
	if len(fs) == 0 {
		return ""
	}
	return "; floors in this run: " + strings.Join(fs, ", ")
}

// targets evaluates every target against what was measured.
func (r *report) targets() []target {
	var ts []target
	notMeasured := func(what, goal, why string) {
		ts = append(ts, target{what: what, goal: goal, measured: why, value: "—", met: "not measured"})
	}
	peerRatio := func(what, goal string, size int, min float64, eddy func(*peerRow) []measure, eddyName string) {
		p := r.peerAt(size)
		if p == nil {
			notMeasured(what, goal, fmt.Sprintf("-peer-sizes without %s", sizeName(size)))
			return
		}
		e, n := statOf(eddy(p), mbps), statOf(p.NATSRelaxed, mbps)
		if e.N == 0 || n.N == 0 {
			notMeasured(what, goal, "runs failed (see notes)")
			return
		}
		ts = append(ts, target{what: what, goal: goal,
			measured: fmt.Sprintf("%s %.1f MB/s, JetStream relaxed %.1f MB/s (%s, %s)", eddyName, e.Med, n.Med, sizeName(size), plural(p.Producers, "producer")),
			value:    fmt.Sprintf("%.2f×", e.Med/n.Med), met: verdict(e.Med/n.Med >= min)})
	}
	peerRatio("durable produce, 1 KiB, against JetStream relaxed", "≥ 1.5×", 1024, 1.5, func(p *peerRow) []measure { return p.EddyDurable }, "Eddy durable")
	if c := r.ceiling("disk"); c != nil && len(c.CeilingRuns) > 0 && len(c.EddyRuns) > 0 {
		e, d := statOf(c.EddyRuns, mbps), statOf(c.CeilingRuns, mbps)
		ts = append(ts, target{what: "durable produce, 1 KiB, against the disk's fdatasync'd 1 MiB writes", goal: "≥ 80%",
			measured: fmt.Sprintf("%s: %.1f MB/s; disk %.1f MB/s", c.Eddy, e.Med, d.Med),
			value:    fmt.Sprintf("%.0f%%", 100*e.Med/d.Med), met: verdict(e.Med/d.Med >= 0.8)})
	} else {
		notMeasured("durable produce, 1 KiB, against the disk's fdatasync'd 1 MiB writes", "≥ 80%", "-ceilings=false or runs failed")
	}
	peerRatio("relaxed produce, 100 B, against JetStream relaxed", "≥ 5×", 100, 5, func(p *peerRow) []measure { return p.EddyRelaxed }, "Eddy relaxed")
	peerRatio("relaxed produce, 1 KiB, against JetStream relaxed", "≥ 2×", 1024, 2, func(p *peerRow) []measure { return p.EddyRelaxed }, "Eddy relaxed")
	if c := r.ceiling("QUIC"); c != nil && len(c.CeilingRuns) > 0 && len(c.EddyRuns) > 0 {
		e, q := statOf(c.EddyRuns, mbps), statOf(c.CeilingRuns, mbps)
		ts = append(ts, target{what: "produce over QUIC against raw quic-go, one stream", goal: "≥ 70%",
			measured: fmt.Sprintf("%s: %.1f MB/s; raw quic-go %.1f MB/s", c.Eddy, e.Med, q.Med),
			value:    fmt.Sprintf("%.0f%%", 100*e.Med/q.Med), met: verdict(e.Med/q.Med >= 0.7)})
	} else {
		notMeasured("produce over QUIC against raw quic-go, one stream", "≥ 70%", "-ceilings=false or runs failed")
	}
	lat := func(what, goal string, runs []measure, rate float64, bound float64, floors string) {
		if r.latency == nil || len(runs) == 0 {
			notMeasured(what, goal, "-latency=false or runs failed")
			return
		}
		s := statOf(runs, p99)
		ts = append(ts, target{what: what, goal: goal,
			measured: fmt.Sprintf("p99 %s ms at %.0f records/s of 1 KiB%s", fmtStat(s, 2), rate, floors),
			value:    fmt.Sprintf("%.2f ms", s.Med), met: verdict(s.Med <= bound)})
	}
	var lp, le []measure
	var lrate, erate float64
	if r.latency != nil {
		lp, le, lrate, erate = r.latency.Produce, r.latency.E2E, r.latency.Rate, r.latency.E2ERate
	}
	lat("durable produce latency at 50% of the maximum throughput", "p99 ≤ 5 ms", lp, lrate, 5, r.latencyFloors())
	lat("end-to-end latency at 50% of the maximum throughput", "p99 ≤ 10 ms", le, erate, 10, "")
	part := func(n int) *partPoint {
		for i := range r.parts {
			if r.parts[i].Partitions == n {
				return &r.parts[i]
			}
		}
		return nil
	}
	for _, w := range []struct {
		name       string
		runs, base func(*partPoint) []measure
	}{
		{"keys spread over every partition", func(p *partPoint) []measure { return p.Runs }, func(p *partPoint) []measure { return p.Base }},
		{"no keys (batches of up to 64 KiB, one partition at a time)", func(p *partPoint) []measure { return p.Unkeyed }, func(p *partPoint) []measure { return p.UnkeyedBase }},
	} {
		what := "throughput with 1000 partitions against 1 partition, " + w.name
		pk := part(1000)
		if pk == nil || len(w.runs(pk)) == 0 {
			notMeasured(what, "≥ 80%", "-partitions without 1000, or its runs failed")
			continue
		}
		a := statOf(w.runs(pk), mbps)
		if r, ok := pairedRatio(w.runs(pk), w.base(pk)); ok {
			ts = append(ts, target{what: what, goal: "≥ 80%",
				measured: fmt.Sprintf("%.1f MB/s against %.1f MB/s on 1 partition, taking turns; per-round ratios %s", a.Med, statOf(w.base(pk), mbps).Med, fmtStat(r, 2)),
				value:    fmt.Sprintf("%.0f%%", 100*r.Med), met: verdict(r.Med >= 0.8)})
		} else if p1 := part(1); p1 != nil && len(w.runs(p1)) > 0 {
			b := statOf(w.runs(p1), mbps)
			ts = append(ts, target{what: what, goal: "≥ 80%",
				measured: fmt.Sprintf("%.1f MB/s against %.1f MB/s (the 1-partition row)", a.Med, b.Med),
				value:    fmt.Sprintf("%.0f%%", 100*a.Med/b.Med), met: verdict(a.Med/b.Med >= 0.8)})
		} else {
			notMeasured(what, "≥ 80%", "no 1-partition runs to compare with")
		}
	}
	if p := part(10000); p != nil {
		ok := p.Err == "" && len(p.Runs) == r.o.runs
		ts = append(ts, target{what: "10000 partitions work", goal: "topic created, every run without error",
			measured: fmt.Sprintf("created and written in %.1f s; %d of %d runs succeeded; %s MB/s", p.CreateSec, len(p.Runs), r.o.runs, fmtStat(statOf(p.Runs, mbps), 1)),
			value:    fmt.Sprintf("%d/%d", len(p.Runs), r.o.runs), met: verdict(ok)})
	} else {
		notMeasured("10000 partitions work", "topic created, every run without error", "-partitions without 10000")
	}
	if p := part(100); p != nil && p.IdleRSS > 0 {
		mib := float64(p.IdleRSS) / (1 << 20)
		ts = append(ts, target{what: "idle memory (RSS) with 100 partitions", goal: "≤ 64 MiB",
			measured: fmt.Sprintf("%.1f MiB", mib), value: fmt.Sprintf("%.1f MiB", mib), met: verdict(mib <= 64)})
	} else {
		notMeasured("idle memory (RSS) with 100 partitions", "≤ 64 MiB", "-partitions without 100")
	}
	var big *startPoint
	for i := range r.startup {
		if big == nil || r.startup[i].Bytes > big.Bytes {
			big = &r.startup[i]
		}
	}
	su := func(what, goal string, runs []float64, bound float64) {
		if big == nil || len(runs) == 0 {
			notMeasured(what, goal, "-data-sizes empty or runs failed")
			return
		}
		s := statVals(runs)
		met := verdict(s.Med <= bound)
		if big.Bytes < 10<<30 {
			met = "not measured"
		}
		ts = append(ts, target{what: what, goal: goal,
			measured: fmt.Sprintf("%s s with %s", fmtStat(s, 3), bytesName(big.Bytes)),
			value:    fmt.Sprintf("%.3f s", s.Med), met: met})
	}
	var sup, rec []float64
	if big != nil {
		sup, rec = big.Startup, big.Recovery
	}
	su("start-up after a clean shutdown, 10 GiB", "≤ 1 s", sup, 1)
	su("recovery after kill -9, 10 GiB", "≤ 10 s", rec, 10)
	return ts
}

// machine describes the host.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB memory", float64(kb)/(1<<20))
		}
	}
	kernel := "unknown kernel"
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		kernel = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s, %s %s/%s", runtime.NumCPU(), model, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// markdown renders the report; plots are the file names of the plots
// written beside it.
func (r *report) markdown(plots []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := r.o
	p("# Eddy compared: JetStream, the machine's ceilings, scale curves\n\n")
	p("Generated by `make compare` (bench/compare) on %s; the run took %s.\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second))
	p("- Machine: %s.\n", machine())
	p("- Data directories under `%s` (%s).\n", r.workDir, r.workFS)
	p("- %s", r.eddyVersion)
	if r.commit != "" {
		p(", built from %s", r.commit)
	}
	if r.natsVersion != "" {
		p("; %s with nats.go v1.55.0", r.natsVersion)
	}
	p(".\n")
	p("- Each figure is the median of %s of %s, with [min–max]; the contenders of a table took turns (A B A B ...). ", plural(o.runs, "run"), o.duration)
	p("Producers are separate clients (Eddy: franz-go through `eddy bench produce`; JetStream: nats.go, asynchronous publish), at most %d records unacknowledged each. ", o.inflight)
	p("MB/s counts 10^6 bytes of record values (and keys) per second.\n")
	if o.quick {
		p("- **Quick run** (`-quick`): single short runs and small dimensions; not for quoting.\n")
	}
	p("\n## Targets\n\n| target | goal | measured | value | met |\n|---|---|---|---|---|\n")
	for _, t := range r.targets() {
		p("| %s | %s | %s | %s | %s |\n", t.what, t.goal, t.measured, t.value, t.met)
	}
	if len(r.peers) > 0 {
		p("\n## Eddy and NATS JetStream: produce\n\n")
		p("One topic of one partition against one stream of one replica, file storage. Durable: Eddy's group commit (`flush.mode = \"group\"`, the default) with acks=all, JetStream with `sync_interval: always`; every acknowledged record is on disk. Relaxed: Eddy's `flush.mode = \"os\"`, JetStream's defaults (a sync every 2 minutes). Both over plain TCP on loopback.\n\n")
		p("| durability | record | producers | Eddy MB/s | JetStream MB/s | Eddy / JetStream | Eddy records/s | JetStream records/s | Eddy p99 ms | JetStream p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, durable := range []bool{true, false} {
			for _, row := range r.peers {
				e, n, name := row.EddyRelaxed, row.NATSRelaxed, "relaxed"
				if durable {
					e, n, name = row.EddyDurable, row.NATSDurable, "durable"
				}
				es, ns := statOf(e, mbps), statOf(n, mbps)
				p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", name, sizeName(row.Size), row.Producers,
					fmtStat(es, 1), fmtStat(ns, 1), ratio(es, ns), fmtStat(statOf(e, recps), 0), fmtStat(statOf(n, recps), 0),
					fmtStat(statOf(e, p99), 2), fmtStat(statOf(n, p99), 2))
			}
		}
	}
	if len(r.ceilings) > 0 {
		p("\n## Ceilings\n\nEach ceiling took turns with the Eddy figure it bounds. The disk ceiling writes 1 MiB chunks to a new file in the data directory's file system, each followed by fdatasync; the transport ceilings carry 1 MiB writes over one stream on loopback, sender and receiver in one process, with TLS 1.3 and (QUIC) the node's default flow-control windows.\n\n")
		p("| ceiling | MB/s | Eddy | MB/s | Eddy / ceiling |\n|---|---|---|---|---|\n")
		for _, c := range r.ceilings {
			cs, es := statOf(c.CeilingRuns, mbps), statOf(c.EddyRuns, mbps)
			p("| %s | %s | %s | %s | %s |\n", c.Ceiling, fmtStat(cs, 1), c.Eddy, fmtStat(es, 1), ratio(es, cs))
		}
	}
	if l := r.latency; l != nil {
		p("\n## Latency at half the maximum throughput\n\n")
		p("Durable node, 1 KiB records, one producer, one partition, TCP. Open-loop runs send at fixed intervals and measure from each record's scheduled send time (no coordinated omission). Produce: the maximum is the producer's closed-loop rate, %s records/s, and the runs send %.0f records/s. End to end adds one consumer and measures from the scheduled send to consumption; its maximum is the consumed rate of a closed-loop run (records produced as fast as possible and consumed to the last), %s records/s, and the runs send %.0f records/s.\n\n", fmtStat(statOf(l.Max, recps), 0), l.Rate, fmtStat(statOf(l.E2EMax, recps), 0), l.E2ERate)
		p("| | p50 ms | p99 ms | p99.9 ms | max ms | records/s |\n|---|---|---|---|---|---|\n")
		rows := []struct {
			name string
			runs []measure
		}{{"produce (send to acknowledgement)", l.Produce}, {"end to end (send to consumption)", l.E2E},
			{"floor: the same pacing and rate to an echo server over loopback, no broker", l.Floor}}
		if c := r.ceiling("disk"); c != nil {
			rows = append(rows, struct {
				name string
				runs []measure
			}{"floor: the disk, one 1 MiB write and its fdatasync (writes/s; the ceilings' runs)", c.CeilingRuns})
		}
		for _, row := range rows {
			if len(row.runs) == 0 {
				continue
			}
			p("| %s | %s | %s | %s | %s | %s |\n", row.name, fmtStat(statOf(row.runs, p50), 2), fmtStat(statOf(row.runs, p99), 2),
				fmtStat(statOf(row.runs, p999), 2), fmtStat(statOf(row.runs, maxl), 2), fmtStat(statOf(row.runs, recps), 0))
		}
		p("\nThe floors show what the machine itself adds at this load: the echo server answers each write of records as soon as it has read it (nothing encoded, stored or synced), with at most %d writes unanswered as a producer keeps its requests, so no broker could answer faster over this path; a durable acknowledgement also waits for a sync of the disk, and the last row is the disk's own latency for a 1 MiB write and its sync (a reference for a group commit of about that size, not a bound for smaller ones).\n", floorInflight)
	}
	if len(r.parts) > 0 {
		p("\n## Partitions and memory\n\n")
		p("A fresh durable node per row; one topic of that many partitions; %s of 1 KiB records, in two workloads taking turns: keyed from 100 keys per partition (at least 1000), so that every partition is written and each request carries a batch for nearly every partition (one or a few records each with many partitions), and without keys, which franz-go's default partitioner sends in batches of up to 64 KiB to one partition at a time. Above one partition, each run also takes turns with the same workload on a new 1-partition topic of a second node, and \"against 1 partition\" is the median [min–max] of those per-round ratios (else the ratio to the 1-partition row). The create time is the time to create the topic and write one record to each partition; idle RSS is read 2 s after that, RSS under load is the peak during the runs (VmRSS).\n\n", plural(o.curveProducers, "producer"))
		p("| partitions | create s | idle RSS MiB | RSS under load MiB | keyed MB/s | records/s | p99 ms | against 1 partition | no keys MB/s | against 1 partition |\n|---|---|---|---|---|---|---|---|---|---|\n")
		var base, baseU stat
		for _, pt := range r.parts {
			if pt.Partitions == 1 {
				base, baseU = statOf(pt.Runs, mbps), statOf(pt.Unkeyed, mbps)
			}
		}
		against := func(runs, paired []measure, row1 stat) string {
			if r, ok := pairedRatio(runs, paired); ok {
				return fmtStat(r, 2)
			}
			return ratio(statOf(runs, mbps), row1)
		}
		for _, pt := range r.parts {
			s, u := statOf(pt.Runs, mbps), statOf(pt.Unkeyed, mbps)
			p("| %d | %.2f | %.1f | %.1f | %s | %s | %s | %s | %s | %s |\n", pt.Partitions, pt.CreateSec, float64(pt.IdleRSS)/(1<<20), float64(pt.LoadRSS)/(1<<20),
				fmtStat(s, 1), fmtStat(statOf(pt.Runs, recps), 0), fmtStat(statOf(pt.Runs, p99), 2), against(pt.Runs, pt.Base, base), fmtStat(u, 1), against(pt.Unkeyed, pt.UnkeyedBase, baseU))
		}
	}
	curve := func(title, desc, xname string, pts []curvePoint, xfmt func(int) string) {
		if len(pts) == 0 {
			return
		}
		p("\n## %s\n\n%s\n\n| %s | MB/s | records/s | p99 ms |\n|---|---|---|---|\n", title, desc, xname)
		for _, pt := range pts {
			p("| %s | %s | %s | %s |\n", xfmt(pt.X), fmtStat(statOf(pt.Runs, mbps), 1), fmtStat(statOf(pt.Runs, recps), 0), fmtStat(statOf(pt.Runs, p99), 2))
		}
	}
	curve("Record size", fmt.Sprintf("Durable node, %s, %s, TCP; the sizes took turns.", plural(o.curveProducers, "producer"), plural(o.curvePartition, "partition")), "record", r.sizes, sizeName)
	curve("Producers", fmt.Sprintf("Durable node, 1 KiB records, %s, TCP; the producer counts took turns.", plural(o.curvePartition, "partition")), "producers", r.producers, func(x int) string { return fmt.Sprint(x) })
	if len(r.startup) > 0 {
		p("\n## Start-up and recovery\n\nA node filled with 64 KiB records over 8 partitions (`flush.mode = \"os\"`), then timed from exec to its ready log line: after a clean shutdown (SIGTERM), and after kill -9 following %s of produce. The page cache stays warm.\n\n", min(o.duration, time.Second))
		p("| data | fill MB/s | start-up after clean shutdown s | recovery after kill -9 s |\n|---|---|---|---|\n")
		for _, sp := range r.startup {
			p("| %s | %.1f | %s | %s |\n", bytesName(sp.Bytes), sp.FillMBps, fmtStat(statVals(sp.Startup), 3), fmtStat(statVals(sp.Recovery), 3))
		}
	}
	if len(plots) > 0 {
		p("\n## Plots\n\n")
		for _, f := range plots {
			p("![%s](%s)\n", strings.TrimSuffix(f, ".png"), f)
		}
	}
	if len(r.notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range r.notes {
			p("- %s\n", strings.ReplaceAll(strings.TrimSpace(n), "\n", " "))
		}
	}
	return b.String()
}
