package storage

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

func TestParseDirName(t *testing.T) {
	for in, want := range map[string]TopicPartition{
		"orders-0": {"orders", 0}, "a-b-c-12": {"a-b-c", 12}, "__consumer_offsets-49": {"__consumer_offsets", 49},
	} {
		if got, ok := ParseDirName(in); !ok || got != want {
			t.Errorf("%s: %v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"orders", "-1", "orders-", "orders-x", "orders-+1"} {
		if _, ok := ParseDirName(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestCleanShutdownMarkerAndLock(t *testing.T) {
	mem := vfs.NewMem()
	cfg := Config{Dir: "/data", Flush: flush.Config{Mode: flush.Group, MaxDelay: time.Microsecond}}
	st, err := Open(mem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.WasClean() {
		t.Fatal("a fresh directory reports a clean shutdown")
	}
	if _, err := Open(mem, cfg); err == nil {
		t.Fatal("a second store opened the locked directory")
	}
	l, err := st.CreateLog(TopicPartition{"t", 0}, partlog.DefaultConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := record.Build(record.BatchOptions{ProducerID: -1}, []record.Simple{{Value: []byte("x")}})
	if _, err := l.Append(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(mem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !st.WasClean() {
		t.Fatal("clean close not seen")
	}
	if _, err := mem.Stat("/data/" + CleanShutdownFile); !vfs.IsNotExist(err) {
		t.Fatal("the marker must be gone while the store runs")
	}
	l, ok := st.Log(TopicPartition{"t", 0})
	if !ok || l.Offsets().LEO != 1 {
		t.Fatal("partition not reopened")
	}
	st.Close()
}

func TestRetentionSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := vfs.NewMem()
		st, err := Open(mem, Config{Dir: "/data", LogConfig: func(tp TopicPartition) partlog.Config {
			c := partlog.DefaultConfig(tp.String())
			c.SegmentBytes = 200
			c.RetentionMs = time.Minute
			return c
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		l, _ := st.CreateLog(TopicPartition{"t", 0}, partlog.Config{SegmentBytes: 200, RetentionMs: time.Minute, IndexIntervalBytes: 4096})
		now := time.Now().UnixMilli()
		for i := 0; i < 10; i++ {
			b, _ := record.Build(record.BatchOptions{ProducerID: -1, BaseTimestamp: now}, []record.Simple{{Value: make([]byte, 100)}})
			if _, err := l.Append(b, 0); err != nil {
				t.Fatal(err)
			}
		}
		stop := make(chan struct{})
		defer close(stop)
		go st.RunRetention(5*time.Minute, stop, func(err error) { t.Error(err) })
		<-time.After(4 * time.Minute)
		synctest.Wait()
		if l.Offsets().LogStart != 0 {
			t.Fatal("retention ran before its interval")
		}
		<-time.After(2 * time.Minute)
		synctest.Wait()
		if off := l.Offsets(); off.LogStart != 10 || off.LEO != 10 {
			t.Fatalf("after the scheduled pass: %+v", off)
		}
	})
}
