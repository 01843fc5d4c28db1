package cleaner

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

func compactLog(t *testing.T, mem *vfs.Mem, name string, mut func(*partlog.Config)) *partlog.Log {
	t.Helper()
	c := partlog.DefaultConfig(name)
	c.SegmentBytes = 1000
	c.IndexIntervalBytes = 64
	c.RetentionMs = -1
	c.Compact = true
	if mut != nil {
		mut(&c)
	}
	l, _, err := partlog.Open(mem, "/d/"+name, c, partlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func put(t *testing.T, l *partlog.Log, key string, ts int64) {
	t.Helper()
	b, _ := record.Build(record.BatchOptions{ProducerID: -1, BaseTimestamp: ts}, []record.Simple{{Key: []byte(key), Value: []byte("value-" + key)}})
	if _, err := l.Append(b, 0); err != nil {
		t.Fatal(err)
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// brokenPolicy fails every cleanup call.
type brokenPolicy struct{}

func (brokenPolicy) Segment(partlog.SegmentMeta) (partlog.SegmentDecision, error) {
	return 0, errors.New("policy crashed")
}
func (brokenPolicy) Records(record.Batch, []bool) ([]partlog.RecordDecision, error) {
	return nil, errors.New("policy crashed")
}

func TestFailureIsolationAndBackoff(t *testing.T) {
	mem := vfs.NewMem()
	good := compactLog(t, mem, "good-0", nil)
	bad := compactLog(t, mem, "bad-0", nil)
	for i := 0; i < 100; i++ {
		put(t, good, "same", 1000)
		put(t, bad, "same", 1000)
	}
	clk := &clock{now: time.UnixMilli(100_000)}
	c := New(Config{Now: clk.Now, Backoff: time.Minute, Policy: func(l *partlog.Log) partlog.Policy {
		if l == bad {
			return brokenPolicy{}
		}
		return nil
	}}, func() []*partlog.Log { return []*partlog.Log{bad, good} })
	err := c.Pass()
	if err == nil || !strings.Contains(err.Error(), "bad-0") || strings.Contains(err.Error(), "good-0") {
		t.Fatalf("pass error: %v", err)
	}
	if st := good.CleanerState(); st.Runs != 1 || st.RecordsRemoved == 0 {
		t.Fatalf("the healthy partition was not cleaned: %+v", st)
	}
	if st := bad.CleanerState(); st.Failures != 1 || !strings.Contains(st.LastError, "policy crashed") || !st.RetryAt.Equal(clk.now.Add(time.Minute)) || st.Cleaning {
		t.Fatalf("the failure is not visible: %+v", st)
	}
	if st := good.CleanerState(); !st.RetryAt.IsZero() || st.Cleaning {
		t.Fatalf("the healthy partition shows a retry: %+v", st)
	}
	// Within the backoff the failing log is left alone; after it, retried.
	clk.now = clk.now.Add(30 * time.Second)
	c.Pass()
	if bad.CleanerState().Runs != 1 {
		t.Fatal("retried before the backoff")
	}
	clk.now = clk.now.Add(time.Minute)
	if err := c.Pass(); err == nil {
		t.Fatal("the retry should fail again")
	}
	if st := bad.CleanerState(); st.Runs != 2 {
		t.Fatalf("not retried after the backoff: %+v", st)
	}
	if s := c.Stats(); s.Failures != 2 || s.Cleanings != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDueAndIdleRoll(t *testing.T) {
	mem := vfs.NewMem()
	l := compactLog(t, mem, "t-0", func(c *partlog.Config) {
		c.SegmentBytes = 1 << 20 // never rolls by size here
		c.SegmentMs = time.Hour
		c.MinCleanableDirtyRatio = 0.5
	})
	for i := 0; i < 20; i++ {
		put(t, l, fmt.Sprint(i%2), 1000)
	}
	now := time.UnixMilli(1000).Add(30 * time.Minute)
	if Due(l, now) {
		t.Fatal("nothing is sealed yet, yet compaction is due")
	}
	if rolled, _ := l.RollIfIdle(now); rolled {
		t.Fatal("rolled before segment.ms")
	}
	now = now.Add(time.Hour)
	if rolled, err := l.RollIfIdle(now); !rolled || err != nil {
		t.Fatalf("an idle segment older than segment.ms did not roll: %v", err)
	}
	if !Due(l, now) {
		t.Fatalf("all-dirty sealed data is not due: %+v", l.CleanerState())
	}
	c := New(Config{Now: func() time.Time { return now }}, func() []*partlog.Log { return []*partlog.Log{l} })
	if err := c.Pass(); err != nil {
		t.Fatal(err)
	}
	if st := l.CleanerState(); st.RecordsRemoved != 18 || Due(l, now) {
		t.Fatalf("after a pass: %+v (due %v)", st, Due(l, now))
	}
}

func TestThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := tokenBucket{rate: 1 << 20}
		start := time.Now()
		for i := 0; i < 3; i++ {
			b.take(1 << 20)
		}
		// 3 MiB at 1 MiB/s with a 1 MiB burst: two seconds (virtual).
		if el := time.Since(start); el != 2*time.Second {
			t.Fatalf("throttled reads took %v, want 2s", el)
		}
	})
}

// expiring deletes segments whose newest record is older than a minute
// and otherwise defers to the log.
type expiring struct{ asked int }

func (p *expiring) Segment(m partlog.SegmentMeta) (partlog.SegmentDecision, error) {
	p.asked++
	if m.MaxTimestamp < m.NowMs-time.Minute.Milliseconds() {
		return partlog.SegmentDelete, nil
	}
	return partlog.SegmentDefault, nil
}

func (p *expiring) Records(record.Batch, []bool) ([]partlog.RecordDecision, error) {
	return nil, errors.New("not asked to rewrite")
}

// TestPolicyRunsEveryPass: a log with a cleanup policy is offered to it on
// every pass, due for compaction or not; its "default" compacts only when
// the log is due.
func TestPolicyRunsEveryPass(t *testing.T) {
	mem := vfs.NewMem()
	l := compactLog(t, mem, "p-0", func(c *partlog.Config) { c.MinCleanableDirtyRatio = 0.5 })
	for i := 0; i < 300; i++ {
		put(t, l, fmt.Sprint(i), 1000)
	}
	pol := &expiring{}
	now := time.UnixMilli(2000)
	c := New(Config{Now: func() time.Time { return now }, Policy: func(*partlog.Log) partlog.Policy { return pol }},
		func() []*partlog.Log { return []*partlog.Log{l} })
	// All dirty: due, and the policy's default compacts (nothing to remove:
	// every key is distinct).
	if err := c.Pass(); err != nil {
		t.Fatal(err)
	}
	// A little more, repeating keys: not due.
	for i := 0; i < 20; i++ {
		put(t, l, "again", 1000)
	}
	if Due(l, now) {
		t.Fatalf("due with %+v", l.CleanerState())
	}
	asked := pol.asked
	if err := c.Pass(); err != nil {
		t.Fatal(err)
	}
	if pol.asked == asked {
		t.Fatal("the policy was not asked on a pass where the log is not due")
	}
	if st := l.CleanerState(); st.RecordsRemoved != 0 {
		t.Fatalf("not due, yet key compaction ran: %+v", st)
	}
	// Once the data has aged, the policy deletes it without the log being due.
	now = now.Add(2 * time.Minute)
	before := l.Offsets()
	if err := c.Pass(); err != nil {
		t.Fatal(err)
	}
	after := l.Offsets()
	if after.LogStart <= before.LogStart || l.CleanerState().RecordsRemoved == 0 {
		t.Fatalf("the policy's deletions did not apply: %+v -> %+v, %+v", before, after, l.CleanerState())
	}
}
