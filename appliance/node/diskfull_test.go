package node

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/eddybroker/eddy/appliance/record"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends. Mounting needs root (CI runs as root).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s (the disk-full test needs root): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// rawProduce sends one batch of count records of size bytes to partition
// 0 and returns the partition's error code and message.
func rawProduce(t *testing.T, cl *kgo.Client, topic string, count, size int) (int16, string) {
	t.Helper()
	recs := make([]record.Simple, count)
	for i := range recs {
		recs[i] = record.Simple{Value: make([]byte, size)}
	}
	batch, err := record.Build(record.BatchOptions{ProducerID: -1, BaseTimestamp: time.Now().UnixMilli()}, recs)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 30000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	tds, err := kadm.NewClient(cl).ListTopics(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	rt.TopicID = tds[topic].ID
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	msg := ""
	if p.ErrorMessage != nil {
		msg = *p.ErrorMessage
	}
	return p.ErrorCode, msg
}

// TestDiskFullOnASmallFilesystem runs a node on a 48 MiB tmpfs: above the
// hard watermark produces fail fast with a message naming it while fetches
// and everything stored stay intact and /readyz says why; freeing space
// below the soft watermark resumes them. Then, with the watermarks out of
// the way, a real ENOSPC fails the produce that meets it and damages
// nothing, and producing resumes once space is freed. A restart reads
// every acknowledged record back.
func TestDiskFullOnASmallFilesystem(t *testing.T) {
	dir := mountTmpfs(t, 48<<20)
	cfg := testConfig(t, dir)
	for k, v := range map[string]string{
		"disk.check_interval": "20ms", "disk.hard_watermark": "50", "disk.soft_watermark": "30",
		"disk.min_free_bytes": "0", "log.segment_bytes": "1MiB", "disk.tuning": "off",
		// Preallocation must neither fill the disk nor fail appends.
		"log.preallocate_bytes": "1MiB",
	} {
		if err := cfg.Set(k, v, config.Flag); err != nil {
			t.Fatal(err)
		}
	}
	n := startNode(t, cfg)
	ctx := ctxT(t)
	cl := tcpClient(t, n)
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "fill"); err != nil {
		t.Fatal(err)
	}
	// Fill to the hard watermark: 256 KiB batches until one is refused.
	acked := 0
	var code int16
	var msg string
	for i := 0; ; i++ {
		if i > 400 {
			t.Fatal("48 MiB written and never refused")
		}
		if code, msg = rawProduce(t, cl, "fill", 256, 1024); code != 0 {
			break
		}
		acked += 256
		// Let the guard see the new usage before the next batch.
		<-time.After(30 * time.Millisecond)
	}
	if code != kerr.KafkaStorageError.Code || !strings.Contains(msg, "disk.hard_watermark 50%") {
		t.Fatalf("produce above the watermark: code %d %q", code, msg)
	}
	if code, body := getStatus("http://" + n.AdminAddr() + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "hard_watermark") {
		t.Fatalf("readyz above the watermark: %d %q", code, body)
	}
	if v, _ := sample(scrape(t, n), "eddy_disk_produce_refused", nil); v != 1 {
		t.Fatalf("eddy_disk_produce_refused = %v while refusing", v)
	}
	// Fetches go on.
	if got := countRecords(t, n, "fill"); got != acked {
		t.Fatalf("fetched %d records above the watermark, acknowledged %d", got, acked)
	}
	// Free space: delete all but the last records; whole segments go.
	end, err := adm.ListEndOffsets(ctx, "fill")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := end.Lookup("fill", 0)
	keepFrom := o.Offset - 512
	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"fill": {0: {Topic: "fill", Partition: 0, At: keepFrom}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "produces to resume below the soft watermark", 30*time.Second, func() bool {
		code, _ := rawProduce(t, cl, "fill", 1, 100)
		return code == 0
	})
	acked = 512 + 1
	if got := countRecords(t, n, "fill"); got != acked {
		t.Fatalf("after freeing space: %d records, want %d", got, acked)
	}

	// A real ENOSPC: the watermarks no longer stop anything first.
	for k, v := range map[string]string{"disk.hard_watermark": "100", "disk.soft_watermark": "99"} {
		cfg.Set(k, v, config.Flag)
	}
	if _, _, err := n.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	var enospc bool
	for i := 0; i < 400 && !enospc; i++ {
		code, msg := rawProduce(t, cl, "fill", 256, 1024)
		switch {
		case code == 0:
			acked += 256
		case code == kerr.KafkaStorageError.Code && strings.Contains(msg, "no space left"):
			enospc = true
		default:
			t.Fatalf("produce on a filling disk: code %d %q", code, msg)
		}
	}
	if !enospc {
		t.Fatal("the filesystem never filled up")
	}
	if got := countRecords(t, n, "fill"); got != acked {
		t.Fatalf("after ENOSPC: %d records readable, %d acknowledged", got, acked)
	}
	end, _ = adm.ListEndOffsets(ctx, "fill")
	o, _ = end.Lookup("fill", 0)
	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"fill": {0: {Topic: "fill", Partition: 0, At: o.Offset - 256}}}); err != nil {
		t.Fatal(err)
	}
	acked = 256
	waitFor(t, "produces to resume after ENOSPC", 30*time.Second, func() bool {
		code, _ := rawProduce(t, cl, "fill", 1, 100)
		if code == 0 {
			acked++
		}
		return code == 0
	})
	if got := countRecords(t, n, "fill"); got != acked {
		t.Fatalf("after ENOSPC and freeing: %d records, want %d", got, acked)
	}
	// And after a restart.
	cl.Close()
	stopNode(t, n)
	n2 := startNode(t, cfg)
	if got := countRecords(t, n2, "fill"); got != acked {
		t.Fatalf("after a restart: %d records, want %d", got, acked)
	}
}

// countRecords reads partition 0 of topic from its log start to its end
// and counts the records, checking offsets only grow.
func countRecords(t *testing.T, n *Node, topic string) int {
	t.Helper()
	ctx := ctxT(t)
	adm := kadm.NewClient(tcpClient(t, n))
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := end.Lookup(topic, 0)
	c := tcpClient(t, n, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}), kgo.FetchMaxBytes(8<<20))
	defer c.Close()
	count, last := 0, int64(-1)
	for last < o.Offset-1 {
		fs := c.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= last {
				t.Errorf("offset %d after %d", r.Offset, last)
			}
			last = r.Offset
			count++
		})
	}
	return count
}

// TestPreallocationNeverFillsTheDisk: with busy partitions that would
// preallocate more than the disk holds, every produce still succeeds and
// preallocation stops below the soft watermark.
func TestPreallocationNeverFillsTheDisk(t *testing.T) {
	dir := mountTmpfs(t, 128<<20)
	cfg := testConfig(t, dir)
	for k, v := range map[string]string{
		"log.preallocate_bytes": "32MiB", "disk.soft_watermark": "70", "disk.hard_watermark": "95",
		"disk.min_free_bytes": "0", "disk.tuning": "off",
	} {
		if err := cfg.Set(k, v, config.Flag); err != nil {
			t.Fatal(err)
		}
	}
	n := startNode(t, cfg)
	ctx := ctxT(t)
	cl := tcpClient(t, n, kgo.RecordRetries(0), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 6, 1, nil, "wide"); err != nil {
		t.Fatal(err)
	}
	// 9 MiB into each of 6 partitions: past the quarter-chunk threshold,
	// each would reserve 32 MiB, 192 MiB in all.
	val := make([]byte, 64<<10)
	for p := int32(0); p < 6; p++ {
		for i := 0; i < 144; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "wide", Partition: p, Value: val}).FirstErr(); err != nil {
				t.Fatalf("produce to partition %d: %v", p, err)
			}
		}
	}
	sp, err := disk.StatSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	if used := sp.UsedPercent(); used >= 80 {
		t.Fatalf("preallocation took the disk to %.0f%% used", used)
	}
}
