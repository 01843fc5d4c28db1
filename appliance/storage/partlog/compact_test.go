package partlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// compactConfig: small segments so workloads roll, compaction on.
func compactConfig() Config {
	c := testConfig("t-0")
	c.SegmentBytes = 1200
	c.IndexIntervalBytes = 64
	c.RetentionMs = -1
	c.Compact = true
	c.DeleteRetention = time.Minute
	return c
}

type modelRec struct {
	key   string
	value []byte // nil: tombstone
	ts    int64
}

// visible reads the log from its start: offset -> record.
func visible(t testing.TB, l *Log) map[int64]modelRec {
	t.Helper()
	out := map[int64]modelRec{}
	off := l.Offsets()
	last := int64(-1)
	for next := off.LogStart; next < off.HW; {
		res, err := l.Read(next, 1<<20, false)
		if err != nil {
			t.Fatalf("read at %d: %v", next, err)
		}
		if len(res.Data) == 0 {
			break
		}
		for buf := res.Data; len(buf) > 0; {
			b, err := record.Check(buf)
			if err != nil {
				t.Fatalf("bad batch at %d: %v", next, err)
			}
			buf = buf[len(b):]
			next = b.LastOffset() + 1
			err = b.EachRecord(0, func(r *record.Record) error {
				if r.Offset <= last {
					return fmt.Errorf("offset %d after %d: out of order or repeated", r.Offset, last)
				}
				last = r.Offset
				v := cloneNil(r.Value)
				out[r.Offset] = modelRec{key: string(r.Key), value: v, ts: r.Timestamp}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func appendKV(t testing.TB, l *Log, key string, value []byte, ts int64) int64 {
	t.Helper()
	b, err := record.Build(record.BatchOptions{BaseTimestamp: ts, ProducerID: -1}, []record.Simple{{Key: []byte(key), Value: value}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Append(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return res.BaseOffset
}

// TestCompactionModel: random puts and tombstones over a small key space,
// compactions in between; after each, a reader from the start sees every
// key's latest value (or nothing for a tombstone past its horizon), in
// offset order, each record at the offset it was written at.
func TestCompactionModel(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			l, _ := openLog(t, vfs.NewMem(), "/d/t-0", compactConfig(), nil, false)
			defer l.Close()
			now := time.UnixMilli(1_000_000)
			written := map[int64]modelRec{}
			latest := map[string]int64{}
			stampedAt := map[int64]time.Time{} // tombstone offset -> first pass that could stamp it
			for step := 0; step < 600; step++ {
				now = now.Add(time.Second)
				key := fmt.Sprintf("k%02d", rng.IntN(15))
				var v []byte
				if rng.IntN(6) != 0 {
					v = fmt.Appendf(nil, "%s@%d", key, step)
				}
				off := appendKV(t, l, key, v, now.UnixMilli())
				written[off] = modelRec{key, v, now.UnixMilli()}
				latest[key] = off
				if step%37 == 36 {
					if _, err := l.Compact(CompactOptions{Now: now, MaxMapBytes: int64(64 + rng.IntN(4096))}); err != nil {
						t.Fatalf("step %d: compact: %v", step, err)
					}
					for off, r := range written {
						if r.value == nil && latest[r.key] == off {
							if _, ok := stampedAt[off]; !ok {
								stampedAt[off] = now
							}
						}
					}
					checkCompacted(t, l, written, latest, stampedAt, now, step)
				}
			}
			st := l.CleanerState()
			if st.RecordsRemoved < 300 || st.Runs < 10 {
				t.Fatalf("compaction barely ran: %+v", st)
			}
			t.Logf("%d records written, %d visible, %+v", len(written), len(visible(t, l)), st)
		})
	}
}

func checkCompacted(t *testing.T, l *Log, written map[int64]modelRec, latest map[string]int64, stampedAt map[int64]time.Time, now time.Time, step int) {
	t.Helper()
	vis := visible(t, l)
	for off, r := range vis {
		w, ok := written[off]
		if !ok || w.key != r.key || !bytes.Equal(w.value, r.value) || (w.value == nil) != (r.value == nil) {
			t.Fatalf("step %d: offset %d holds %q=%q, was written as %q=%q", step, off, r.key, r.value, w.key, w.value)
		}
	}
	for key, off := range latest {
		w := written[off]
		_, seen := vis[off]
		switch {
		case w.value != nil && !seen:
			t.Fatalf("step %d: the latest value of %s (offset %d) is gone", step, key, off)
		case w.value == nil && !seen:
			// A tombstone may go only after its delete horizon.
			if first, ok := stampedAt[off]; !ok || now.Sub(first) < time.Minute {
				t.Fatalf("step %d: tombstone of %s at %d removed before its horizon", step, key, off)
			}
		}
		// No older value of the key may be the last one a reader sees.
		lastSeen := int64(-1)
		for o, r := range vis {
			if r.key == key && o > lastSeen {
				lastSeen = o
			}
		}
		if lastSeen >= 0 && lastSeen != off {
			t.Fatalf("step %d: key %s: a reader ends at offset %d, the latest is %d", step, key, lastSeen, off)
		}
	}
}

func TestCompactionKeepsItsPromises(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCompactionLag = 30 * time.Second
	mem := vfs.NewMem()
	l, _ := openLog(t, mem, "/d/t-0", cfg, nil, false)
	defer l.Close()
	// The producer of pid 9 wrote its last batch early; its records are
	// all overwritten later, but the batch must stay.
	pb, _ := record.Build(record.BatchOptions{BaseTimestamp: 1000, ProducerID: 9, BaseSequence: 0}, []record.Simple{{Key: []byte("a"), Value: []byte("p9")}})
	pres, err := l.Append(pb, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.SetHooks(Hooks{LastBatch: func(pid int64) (int64, bool) {
		if pid == 9 {
			return pres.LastOffset, true
		}
		return 0, false
	}})
	ts := int64(2000)
	for i := 0; i < 60; i++ {
		appendKV(t, l, "a", fmt.Appendf(nil, "a%d", i), ts)
		appendKV(t, l, fmt.Sprint("b", i%3), fmt.Appendf(nil, "b%d", i), ts)
		ts += 100
	}
	tomb := appendKV(t, l, "a", nil, ts)
	// Young records: written "now".
	now := time.UnixMilli(ts + 60_000)
	young := appendKV(t, l, "b0", []byte("young"), now.UnixMilli())
	for i := 0; i < 10; i++ {
		appendKV(t, l, "b0", []byte("young2"), now.UnixMilli())
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Compact(CompactOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	vis := visible(t, l)
	if _, ok := vis[tomb]; !ok {
		t.Fatal("a fresh tombstone was removed")
	}
	if _, ok := vis[young]; !ok {
		t.Fatal("a record younger than min.compaction.lag.ms was removed")
	}
	// The producer's last batch survives, emptied.
	res, _ := l.Read(pres.BaseOffset, 1000, false)
	b, _ := record.Check(res.Data)
	if b.ProducerID() != 9 || b.BaseOffset() != pres.BaseOffset {
		t.Fatalf("the producer's last batch is gone (first batch: pid %d at %d)", b.ProducerID(), b.BaseOffset())
	}
	// Everything in the head (above the cleaner offset) is untouched.
	st := l.CleanerState()
	if st.CleanerOffset == 0 || st.Runs != 1 || st.RecordsRemoved == 0 {
		t.Fatalf("cleaner state %+v", st)
	}
	for o := st.CleanerOffset; o < l.Offsets().HW; o++ {
		if _, ok := vis[o]; !ok {
			t.Fatalf("offset %d in the head is missing", o)
		}
	}
	// Before the horizon the tombstone stays; after it, a pass drops it.
	later := now.Add(30 * time.Second)
	if _, err := l.Compact(CompactOptions{Now: later}); err != nil {
		t.Fatal(err)
	}
	if _, ok := visible(t, l)[tomb]; !ok {
		t.Fatal("tombstone removed before delete.retention.ms")
	}
	if _, err := l.Compact(CompactOptions{Now: now.Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	vis = visible(t, l)
	if _, ok := vis[tomb]; ok {
		t.Fatal("tombstone kept past its horizon")
	}
	for _, r := range vis {
		if r.key == "a" && r.value != nil && string(r.value) != "p9" {
			t.Fatalf("an old value of a deleted key survived: %q", r.value)
		}
	}
	// Survives a reopen.
	l.Close()
	l, _ = openLog(t, mem, "/d/t-0", cfg, nil, true)
	defer l.Close()
	if after := visible(t, l); len(after) != len(vis) {
		t.Fatalf("reopen changed the compacted log: %d records, had %d", len(after), len(vis))
	}
}

// failingPolicy is a cleanup policy that errors part way.
type failingPolicy struct {
	calls    int
	inRecord bool // fail in the record pass rather than the segment one
}

func (p *failingPolicy) Segment(SegmentMeta) (SegmentDecision, error) {
	p.calls++
	if p.inRecord {
		return SegmentRewrite, nil
	}
	if p.calls == 2 {
		return 0, errors.New("plugin trapped")
	}
	return SegmentDelete, nil
}

func (p *failingPolicy) Records(b record.Batch, latest []bool) ([]RecordDecision, error) {
	if b.BaseOffset() > 20 {
		return nil, errors.New("plugin trapped in records")
	}
	return make([]RecordDecision, len(latest)), nil
}

func TestFailingPolicyDeletesNothing(t *testing.T) {
	l, _ := openLog(t, vfs.NewMem(), "/d/t-0", compactConfig(), nil, false)
	defer l.Close()
	for i := 0; i < 80; i++ {
		appendKV(t, l, fmt.Sprint(i), []byte("v"), 1000)
	}
	before := visible(t, l)
	for i, p := range []*failingPolicy{{}, {inRecord: true}} {
		if _, err := l.Compact(CompactOptions{Now: time.UnixMilli(10_000), Policy: p}); err == nil || !strings.Contains(err.Error(), "plugin trapped") {
			t.Fatalf("a failing policy's pass: %v", err)
		}
		if after := visible(t, l); len(after) != len(before) {
			t.Fatalf("a failing policy deleted %d records", len(before)-len(after))
		}
		if st := l.CleanerState(); st.Failures != uint64(i+1) || !strings.Contains(st.LastError, "plugin trapped") {
			t.Fatalf("failure not recorded: %+v", st)
		}
	}
}

// TestCompactionCrashPoints crashes a compaction at every filesystem step
// and reopens: every record that should survive is there, once, at its
// offset, and nothing that was not written appears.
func TestCompactionCrashPoints(t *testing.T) {
	base := vfs.NewMem()
	cfg := compactConfig()
	l, _ := openLog(t, base, "/d/t-0", cfg, nil, false)
	for i := 0; i < 300; i++ {
		var v []byte
		if i%11 != 0 {
			v = fmt.Appendf(nil, "v%d", i)
		}
		appendKV(t, l, fmt.Sprint("k", i%12), v, int64(1000+i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_000_000)
	before := func() map[int64]modelRec {
		l, _ := openLog(t, base.CrashClone(vfs.TailDrop, nil), "/d/t-0", cfg, nil, true)
		defer l.Close()
		return visible(t, l)
	}()
	// A dry run counts the steps and gives the compacted state.
	dry := base.CrashClone(vfs.TailDrop, nil)
	l, _ = openLog(t, dry, "/d/t-0", cfg, nil, true)
	start := dry.Ops()
	if _, err := l.Compact(CompactOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	steps := dry.Ops() - start
	after := visible(t, l)
	l.Close()
	if len(after) >= len(before) || steps < 10 {
		t.Fatalf("the compaction did too little to test: %d -> %d records in %d steps", len(before), len(after), steps)
	}
	for k := int64(1); k <= steps; k++ {
		fs := base.CrashClone(vfs.TailDrop, nil)
		l, _ := openLog(t, fs, "/d/t-0", cfg, nil, true)
		fs.SetCrashAfter(k)
		_, err := l.Compact(CompactOptions{Now: now})
		if err == nil && !fs.Crashed() {
			t.Fatalf("crash point %d of %d not reached", k, steps)
		}
		for mode := vfs.TailDrop; mode <= vfs.TailSectors; mode++ {
			re, _, err := Open(fs.CrashClone(mode, rand.New(rand.NewPCG(uint64(k), uint64(mode)))), "/d/t-0", cfg, Options{})
			if err != nil {
				t.Fatalf("crash at step %d/%d (mode %d): reopen: %v", k, steps, mode, err)
			}
			vis := visible(t, re)
			for off, r := range vis {
				b, ok := before[off]
				if !ok || b.key != r.key || !bytes.Equal(b.value, r.value) {
					t.Fatalf("crash at step %d/%d: offset %d holds %q=%q, never written so", k, steps, off, r.key, r.value)
				}
			}
			for off := range after {
				if _, ok := vis[off]; !ok {
					t.Fatalf("crash at step %d/%d (mode %d): offset %d, which compaction keeps, is missing", k, steps, mode, off)
				}
			}
			re.Close()
		}
	}
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// testPolicy deletes whole segments older than an hour, rewrites the
// others: records whose value starts with "debug" are dropped, records
// whose value starts with "pin" are kept even when superseded, the rest
// follow key compaction.
type testPolicy struct {
	metas  []SegmentMeta
	latest int // records seen flagged latest-for-key
}

func (p *testPolicy) Segment(m SegmentMeta) (SegmentDecision, error) {
	p.metas = append(p.metas, m)
	if m.MaxTimestamp < m.NowMs-time.Hour.Milliseconds() {
		return SegmentDelete, nil
	}
	return SegmentRewrite, nil
}

func (p *testPolicy) Records(b record.Batch, latest []bool) ([]RecordDecision, error) {
	var out []RecordDecision
	err := b.EachRecord(0, func(r *record.Record) error {
		if latest[len(out)] {
			p.latest++
		}
		switch {
		case bytes.HasPrefix(r.Value, []byte("debug")):
			out = append(out, RecordDrop)
		case bytes.HasPrefix(r.Value, []byte("pin")):
			out = append(out, RecordKeep)
		default:
			out = append(out, RecordDefault)
		}
		return nil
	})
	return out, err
}

// TestPolicyDecisions: a cleanup policy's segment and record decisions
// apply, its default is key compaction, and the log's own invariants hold
// whatever it says: the active segment and offsets at the fence or above
// are never offered, and a dry run changes nothing.
func TestPolicyDecisions(t *testing.T) {
	l, _ := openLog(t, vfs.NewMem(), "/d/t-0", compactConfig(), nil, false)
	defer l.Close()
	now := time.UnixMilli(100 * time.Hour.Milliseconds())
	old := now.Add(-2 * time.Hour).UnixMilli()
	written := map[int64]string{}
	put := func(key, value string, ts int64) {
		written[appendKV(t, l, key, []byte(value), ts)] = key + "=" + value
	}
	// Old data: whole segments to delete.
	for i := 0; i < 30; i++ {
		put(fmt.Sprint("old", i%3), fmt.Sprint("v", i), old)
	}
	l.Roll()
	oldEnd := l.Offsets().LEO
	// Recent data: pins, debug lines, and superseded values.
	for i := 0; i < 60; i++ {
		v := fmt.Sprint("v", i)
		switch i % 10 {
		case 3:
			v = fmt.Sprint("debug", i)
		case 7:
			v = fmt.Sprint("pin", i)
		}
		put(fmt.Sprint("k", i%4), v, now.UnixMilli()-1000)
	}
	l.Roll()
	fence := l.Offsets().LEO
	for i := 0; i < 10; i++ {
		put(fmt.Sprint("k", i%4), "past the fence", now.UnixMilli())
	}
	l.Roll()
	put("k0", "active", now.UnixMilli())
	before := visible(t, l)

	dry := &testPolicy{}
	res, err := l.Compact(CompactOptions{Now: now, Policy: dry, Fence: fence, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.RecordsRemoved == 0 || len(visible(t, l)) != len(before) {
		t.Fatalf("dry run: %+v, %d records visible of %d", res, len(visible(t, l)), len(before))
	}

	p := &testPolicy{}
	res, err = l.Compact(CompactOptions{Now: now, Policy: p, Fence: fence})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.metas {
		if m.Last >= fence {
			t.Fatalf("segment [%d, %d] at or past the fence %d offered to the policy", m.Base, m.Last, fence)
		}
		if m.Records == 0 || m.MinTimestamp > m.MaxTimestamp || m.NowMs != now.UnixMilli() || m.FederatedUpto != fence || m.PartitionSize == 0 {
			t.Fatalf("segment meta %+v", m)
		}
	}
	if p.latest == 0 {
		t.Fatal("no record was flagged latest-for-key")
	}
	vis := visible(t, l)
	// The last value of each recent key below the fence.
	lastBelowFence := map[string]int64{}
	for off, kv := range written {
		if off < fence {
			k := strings.SplitN(kv, "=", 2)[0]
			lastBelowFence[k] = max(lastBelowFence[k], off)
		}
	}
	for off, kv := range written {
		k, v, _ := strings.Cut(kv, "=")
		_, kept := vis[off]
		want := true
		switch {
		case off >= fence:
		case off < oldEnd:
			want = false
		case strings.HasPrefix(v, "debug"):
			want = false
		case strings.HasPrefix(v, "pin"):
		default:
			// Key compaction over the cleanable range: only the key's
			// latest below the fence survives.
			want = lastBelowFence[k] == off
		}
		if kept != want {
			t.Fatalf("offset %d (%s): kept %v, want %v (result %+v)", off, kv, kept, want, res)
		}
	}
	if vis[l.Offsets().LEO-1].value == nil {
		t.Fatal("the active segment's record is gone")
	}
	if off := l.Offsets(); off.LogStart < oldEnd {
		t.Fatalf("log start %d: the deleted segments are still counted", off.LogStart)
	}
}
