package metadata

import (
	"errors"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

func TestLocalPersistsEveryChange(t *testing.T) {
	mem := vfs.NewMem()
	l, err := OpenLocal(mem, "/d/meta", "")
	if err != nil {
		t.Fatal(err)
	}
	cluster := l.ClusterID()
	if len(cluster) != 22 {
		t.Fatalf("cluster id %q", cluster)
	}
	id := NewTopicID()
	if err := l.CreateTopic(Topic{Name: "b", ID: id, Partitions: 2, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic(Topic{Name: "a", ID: NewTopicID(), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic(Topic{Name: "a"}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := l.SetPartitions("b", 1); !errors.Is(err, ErrBadPartition) {
		t.Fatalf("shrink: %v", err)
	}
	if err := l.SetPartitions("b", 5); err != nil {
		t.Fatal(err)
	}
	if err := l.SetTopicConfigs("b", map[string]string{"segment.bytes": "1000"}); err != nil {
		t.Fatal(err)
	}
	first, _ := l.AllocateProducerIDs(10)
	second, _ := l.AllocateProducerIDs(10)
	if second != first+10 {
		t.Fatalf("producer id blocks %d then %d", first, second)
	}
	if err := l.DeleteTopic("a"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteTopic("a"); !errors.Is(err, ErrNoSuchTopic) {
		t.Fatalf("second delete: %v", err)
	}
	// Everything survives a power cut.
	crashed := mem.CrashClone(vfs.TailDrop, nil)
	l2, err := OpenLocal(crashed, "/d/meta", "")
	if err != nil {
		t.Fatal(err)
	}
	if l2.ClusterID() != cluster {
		t.Fatalf("cluster id changed: %s", l2.ClusterID())
	}
	ts := l2.Topics()
	if len(ts) != 1 || ts[0].Name != "b" || ts[0].ID != id || ts[0].Partitions != 5 || ts[0].Configs["segment.bytes"] != "1000" || len(ts[0].Configs) != 1 {
		t.Fatalf("topics after a crash: %+v", ts)
	}
	if next, _ := l2.AllocateProducerIDs(1); next != second+10 {
		t.Fatalf("producer ids reused after restart: %d", next)
	}
	// A data directory of another cluster is refused.
	if _, err := OpenLocal(crashed, "/d/meta", "other-cluster"); err == nil || !strings.Contains(err.Error(), cluster) {
		t.Fatalf("foreign cluster id: %v", err)
	}
}

func TestFailedWriteLeavesStateUnchanged(t *testing.T) {
	mem := vfs.NewMem()
	l, err := OpenLocal(mem, "/d/meta", "c1")
	if err != nil {
		t.Fatal(err)
	}
	mem.SetCapacity(mem.Used() + 10) // the next rewrite cannot fit
	if err := l.CreateTopic(Topic{Name: "t", Partitions: 1}); err == nil {
		t.Fatal("create succeeded on a full disk")
	}
	if _, ok := l.Topic("t"); ok {
		t.Fatal("a topic whose creation failed is visible")
	}
}
