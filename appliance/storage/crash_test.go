package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// crashConfig is a small-segment, fast-flush configuration so a short
// workload rolls, indexes, retains and deletes.
func crashConfig(dir string) Config {
	return Config{
		Dir:   dir,
		Flush: flush.Config{Mode: flush.Group, MaxDelay: time.Nanosecond},
		LogConfig: func(tp TopicPartition) partlog.Config {
			c := partlog.DefaultConfig(tp.String())
			c.SegmentBytes = 1500
			c.IndexIntervalBytes = 100
			c.RetentionMs = -1
			c.RetentionBytes = 4000
			c.VerifyReads = true
			return c
		},
	}
}

var crashParts = []TopicPartition{{"orders", 0}, {"orders", 1}}

// ledger is what the workload was told: acknowledged records and the log
// start each partition was promised.
type ledger struct {
	acked    map[TopicPartition]map[int64][]byte
	logStart map[TopicPartition]int64
}

func newLedger() *ledger {
	l := &ledger{acked: map[TopicPartition]map[int64][]byte{}, logStart: map[TopicPartition]int64{}}
	for _, tp := range crashParts {
		l.acked[tp] = map[int64][]byte{}
	}
	return l
}

// runWorkload drives a deterministic sequence of appends, delete-records,
// retention passes and a clean close. It stops at the first error, which on
// a crashing filesystem is the crash.
func runWorkload(fsys vfs.FS, seed uint64, steps int, led *ledger) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	st, err := Open(fsys, crashConfig("/data"))
	if err != nil {
		return err
	}
	defer st.Close()
	logs := map[TopicPartition]*partlog.Log{}
	for _, tp := range crashParts {
		l, err := st.CreateLog(tp, crashConfig("").LogConfig(tp))
		if err != nil {
			return err
		}
		logs[tp] = l
	}
	for step := 0; step < steps; step++ {
		tp := crashParts[rng.IntN(len(crashParts))]
		l := logs[tp]
		switch op := rng.IntN(20); {
		case op < 17:
			n := 1 + rng.IntN(3)
			recs := make([]record.Simple, n)
			vals := make([][]byte, n)
			for i := range recs {
				vals[i] = fmt.Appendf(nil, "seed%d-step%d-rec%d-%s", seed, step, i, bytes.Repeat([]byte{'x'}, rng.IntN(120)))
				recs[i] = record.Simple{Key: []byte{byte(i)}, Value: vals[i], TimestampDelta: int64(i)}
			}
			b, _ := record.Build(record.BatchOptions{BaseTimestamp: int64(step), ProducerID: -1}, recs)
			res, err := l.Append(b, 0)
			if err != nil {
				return err
			}
			for i, v := range vals {
				led.acked[tp][res.BaseOffset+int64(i)] = v
			}
		case op < 18:
			off := l.Offsets()
			target := off.LogStart + rng.Int64N(off.HW-off.LogStart+1)/3
			s, err := l.DeleteRecords(target)
			if err != nil {
				return err
			}
			led.logStart[tp] = max(led.logStart[tp], s)
		default:
			res, err := l.EnforceRetention(int64(step))
			if err != nil {
				return err
			}
			led.logStart[tp] = max(led.logStart[tp], res.LogStart)
		}
	}
	return st.Close()
}

// verify reopens a filesystem after a crash and checks the promises.
func verify(t *testing.T, fsys vfs.FS, led *ledger, what string) {
	t.Helper()
	st, err := Open(fsys, crashConfig("/data"))
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	defer st.Close()
	for _, tp := range crashParts {
		l, ok := st.Log(tp)
		if !ok {
			if len(led.acked[tp]) > 0 {
				t.Fatalf("%s: partition %s with acknowledged records is gone", what, tp)
			}
			continue
		}
		off := l.Offsets()
		if off.LogStart < led.logStart[tp] {
			t.Fatalf("%s: %s log start %d, below the acknowledged %d", what, tp, off.LogStart, led.logStart[tp])
		}
		got := map[int64][]byte{}
		for next := off.LogStart; next < off.HW; {
			res, err := l.Read(next, 4096, false)
			if err != nil {
				t.Fatalf("%s: %s read at %d: %v", what, tp, next, err)
			}
			if len(res.Data) == 0 {
				t.Fatalf("%s: %s read at %d below HW %d returned nothing", what, tp, next, off.HW)
			}
			for buf := res.Data; len(buf) > 0; {
				b, err := record.Check(buf)
				if err != nil {
					t.Fatalf("%s: %s served a bad batch at %d: %v", what, tp, next, err)
				}
				buf = buf[len(b):]
				err = b.EachRecord(0, func(r *record.Record) error {
					if r.Offset < next {
						return nil
					}
					if r.Offset != next {
						return fmt.Errorf("offset %d follows %d: not contiguous", r.Offset, next-1)
					}
					got[r.Offset] = append([]byte(nil), r.Value...)
					next++
					return nil
				})
				if err != nil {
					t.Fatalf("%s: %s: %v", what, tp, err)
				}
			}
		}
		for o, v := range led.acked[tp] {
			if o < off.LogStart {
				continue
			}
			if g, ok := got[o]; !ok || !bytes.Equal(g, v) {
				t.Fatalf("%s: %s acknowledged offset %d lost or changed: got %q want %q (offsets %+v)", what, tp, o, g, v, off)
			}
		}
		// The recovered log takes appends at its end.
		b, _ := record.Build(record.BatchOptions{ProducerID: -1}, []record.Simple{{Value: []byte("after")}})
		if res, err := l.Append(b, 0); err != nil || res.BaseOffset != off.LEO {
			t.Fatalf("%s: %s append after recovery: %+v %v", what, tp, res, err)
		}
	}
}

// TestCrashPoints crashes the workload at every mutating filesystem step
// (write, sync, truncate, create, rename, remove, directory sync), reboots
// the filesystem with each kind of torn tail, and checks that every
// acknowledged record is read back at its offset, offsets are contiguous
// from the log start, the log start never fell back and no bad batch is
// served. EDDY_CRASH_SEEDS raises the number of workloads.
func TestCrashPoints(t *testing.T) {
	seeds := 4
	if s := os.Getenv("EDDY_CRASH_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("EDDY_CRASH_SEEDS: %v", err)
		}
		seeds = n
	}
	const steps = 120
	total := 0
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		// A dry run counts the steps and checks the workload itself.
		dry := vfs.NewMem()
		led := newLedger()
		if err := runWorkload(dry, seed, steps, led); err != nil {
			t.Fatalf("seed %d: workload without crash: %v", seed, err)
		}
		ops := dry.Ops()
		verify(t, dry, led, fmt.Sprintf("seed %d, no crash", seed))
		for k := int64(1); k <= ops; k++ {
			mem := vfs.NewMem()
			mem.SetCrashAfter(k)
			led := newLedger()
			err := runWorkload(mem, seed, steps, led)
			if !mem.Crashed() {
				t.Fatalf("seed %d: crash point %d of %d never reached (err %v)", seed, k, ops, err)
			}
			if err != nil && !errors.Is(err, vfs.ErrCrashed) {
				t.Fatalf("seed %d crash %d: workload failed with %v, not the crash", seed, k, err)
			}
			mode := vfs.TailMode(k % 5)
			verify(t, mem.CrashClone(mode, rand.New(rand.NewPCG(seed, uint64(k)))), led, fmt.Sprintf("seed %d, crash at op %d/%d, tail mode %d", seed, k, ops, mode))
			total++
		}
	}
	t.Logf("%d crash points verified", total)
	if total < 2000 && seeds >= 4 {
		t.Fatalf("only %d crash points; the workload lost its reach", total)
	}
}
