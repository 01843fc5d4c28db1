package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eddybroker/eddy/appliance/config"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddybroker/eddy/transport/kafkawire"
)

// testConfig is the default config on loopback ports the kernel picks and a
// temporary data directory.
func testConfig(t testing.TB, dir string) *config.Config {
	t.Helper()
	cfg := config.Default()
	for k, v := range map[string]string{
		"node.data_dir":                 dir,
		"listeners.kafka.addr":          "127.0.0.1:0",
		"listeners.quic.addr":           "127.0.0.1:0",
		"admin.addr":                    "127.0.0.1:0",
		"logging.level":                 "warn",
		"flush.max_delay":               "2ms",
		"listeners.quic.shutdown_grace": "2s",
	} {
		if err := cfg.Set(k, v, config.Flag); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

func startNode(t testing.TB, cfg *config.Config) *Node {
	t.Helper()
	n, err := Start(context.Background(), cfg, Options{Version: "test"})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { stopNode(t, n) })
	return n
}

func stopNode(t testing.TB, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func tcpClient(t testing.TB, n *Node, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(n.KafkaAddr())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestReadyzAndRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(t, dir))
	resp, err := http.Get("http://" + n.AdminAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	c := tcpClient(t, n, kgo.DefaultProduceTopic("r"), kgo.AllowAutoTopicCreation())
	if err := c.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("one")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	stopNode(t, n)
	if _, err := os.Stat(dir + "/logs/.clean-shutdown"); err != nil {
		t.Fatalf("no clean-shutdown marker after a drain: %v", err)
	}
	n2 := startNode(t, testConfig(t, dir))
	if st := n2.Status(); !st.CleanStart || st.Topics != 1 {
		t.Fatalf("status after restart: %+v", st)
	}
	cons := tcpClient(t, n2, kgo.ConsumeTopics("r"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cons.PollFetches(ctxT(t))
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "one" {
		t.Fatalf("after restart: %v", fs.Errors())
	}
}

// TestSecondNodeOnTheDataDirIsRefused: a node cannot start on a data
// directory another node is using; the running node is undisturbed, and
// the directory is free again once it stops.
func TestSecondNodeOnTheDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(t, dir))
	c := tcpClient(t, n, kgo.DefaultProduceTopic("r"), kgo.AllowAutoTopicCreation())
	if err := c.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("one")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), testConfig(t, dir), Options{Version: "test"})
	if err == nil || !strings.Contains(err.Error(), "data dir "+dir+" is in use by another process") {
		t.Fatalf("second node on the same data dir: err %v, want it refused", err)
	}
	if err := c.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("two")}).FirstErr(); err != nil {
		t.Fatalf("the running node after the refused start: %v", err)
	}
	c.Close()
	stopNode(t, n)
	n2 := startNode(t, testConfig(t, dir))
	if st := n2.Status(); !st.CleanStart {
		t.Fatalf("status of the next node: %+v", st)
	}
	cons := tcpClient(t, n2, kgo.ConsumeTopics("r"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 2 {
		fs := cons.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		for _, r := range fs.Records() {
			got = append(got, string(r.Value))
		}
	}
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("records after the restart: %q", got)
	}
}

// TestDataDirLockFailureIsNamed: a data directory whose lock file cannot
// be opened (here it is a directory; in practice permissions or a
// read-only filesystem) is reported as that, not as a directory in use.
func TestDataDirLockFailureIsNamed(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(dir+"/.lock", 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), testConfig(t, dir), Options{Version: "test"})
	if err == nil || strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "lock data dir "+dir) {
		t.Fatalf("start with an unopenable lock file: %v", err)
	}
}

// TestConnectionLimitPerIP: with kafka.max_connections_per_ip = 1, a
// second connection from the same address is closed at once and counted
// in the metrics; the first keeps being served.
func TestConnectionLimitPerIP(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	if err := cfg.Set("kafka.max_connections_per_ip", "1", config.Flag); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, cfg)
	ask := func(c net.Conn) error {
		if _, err := c.Write(kafkawire.AppendRequest(nil, 1, nil, kmsg.NewPtrApiVersionsRequest())); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := kafkawire.ReadFrame(c, 1<<20)
		return err
	}
	first, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := ask(first); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	second, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := ask(second); err == nil {
		t.Fatal("a second connection from the same address was served")
	}
	if err := ask(first); err != nil {
		t.Fatalf("first connection after the refusal: %v", err)
	}
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `eddy_connections_refused_total{limit="max_connections_per_ip",transport="tcp"} 1`) {
		t.Fatalf("no refusal in the metrics:\n%s", body)
	}
}

func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is needed (apt-get install kcat; .ci/run installs it): %v", err)
	}
	n := startNode(t, testConfig(t, t.TempDir()))
	var lines []string
	for i := 0; i < 500; i++ {
		lines = append(lines, fmt.Sprintf("key%d:value-%d", i%7, i))
	}
	prod := exec.Command(kcat, "-b", n.KafkaAddr(), "-t", "kc", "-P", "-K:", "-X", "acks=all")
	prod.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	cons := exec.Command(kcat, "-b", n.KafkaAddr(), "-t", "kc", "-C", "-e", "-o", "beginning", "-f", "%o %k:%s\n")
	out, err := cons.Output()
	if err != nil {
		t.Fatalf("kcat consume: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	i := 0
	for sc.Scan() {
		want := fmt.Sprintf("%d %s", i, lines[i])
		if sc.Text() != want {
			t.Fatalf("line %d: %q, want %q", i, sc.Text(), want)
		}
		i++
	}
	if i != len(lines) {
		t.Fatalf("kcat consumed %d of %d records", i, len(lines))
	}
	// kcat's metadata view and a franz-go consumer agree.
	md := exec.Command(kcat, "-b", n.KafkaAddr(), "-L", "-t", "kc")
	mout, err := md.CombinedOutput()
	if err != nil || !strings.Contains(string(mout), `topic "kc" with 1 partitions`) {
		t.Fatalf("kcat -L: %v\n%s", err, mout)
	}
}

func TestSarama(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()))
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Compression = sarama.CompressionSnappy
	sc.Metadata.AllowAutoTopicCreation = true
	prod, err := sarama.NewSyncProducer([]string{n.KafkaAddr()}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const total = 300
	for i := 0; i < total; i++ {
		p, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "sar", Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))})
		if err != nil || p != 0 || off != int64(i) {
			t.Fatalf("send %d: partition %d offset %d: %v", i, p, off, err)
		}
	}
	cons, err := sarama.NewConsumer([]string{n.KafkaAddr()}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition("sar", 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	deadline := time.After(time.Minute)
	for i := 0; i < total; i++ {
		select {
		case m := <-pc.Messages():
			if m.Offset != int64(i) || string(m.Value) != fmt.Sprintf("v%d", i) || string(m.Key) != fmt.Sprint(i) {
				t.Fatalf("message %d: offset %d %q=%q", i, m.Offset, m.Key, m.Value)
			}
		case err := <-pc.Errors():
			t.Fatalf("consume: %v", err)
		case <-deadline:
			t.Fatalf("consumed %d of %d", i, total)
		}
	}
}

func TestReloadAppliesHotSettings(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	n := startNode(t, cfg)
	next := cfg.Clone()
	next.Set("flush.max_delay", "7ms", config.File)
	next.Set("topics.auto_create", "false", config.File)
	next.Set("listeners.kafka.advertised", "example.com:9092", config.File)
	applied, restart, err := n.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(applied, ",") != "flush.max_delay,topics.auto_create" || strings.Join(restart, ",") != "listeners.kafka.advertised" {
		t.Fatalf("applied %v, need restart %v", applied, restart)
	}
	if n.Config().Flush.MaxDelay.D() != 7*time.Millisecond {
		t.Fatal("the node's config did not take the new max_delay")
	}
	adm := kadm.NewClient(tcpClient(t, n))
	md, err := adm.Metadata(ctxT(t), "not-created")
	if err != nil {
		t.Fatal(err)
	}
	if md.Topics["not-created"].Err == nil {
		t.Fatal("auto-creation still on after the reload turned it off")
	}
}

func TestInvalidConfigIsRefusedWithEveryProblem(t *testing.T) {
	f := t.TempDir() + "/bad.toml"
	os.WriteFile(f, []byte("[flush]\nmode = \"sometimes\"\nmax_delay = \"fast\"\n[node]\nprofil = \"dev\"\n"), 0o644)
	_, err := config.Load(config.LoadOptions{File: f})
	if err == nil {
		t.Fatal("a bad file loaded")
	}
	for _, key := range []string{"flush.mode", "flush.max_delay", "profil"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("the error does not name %s: %v", key, err)
		}
	}
}

// TestKcatBalancedConsumers runs two kcat -G members: they split the
// partitions and together read everything.
func TestKcatBalancedConsumers(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is needed (apt-get install kcat; .ci/run installs it): %v", err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.Set("groups.initial_rebalance_delay", "0s", config.Flag)
	n := startNode(t, cfg)
	ctx := ctxT(t)
	adm := kadm.NewClient(tcpClient(t, n))
	if _, err := adm.CreateTopic(ctx, 6, 1, nil, "kg"); err != nil {
		t.Fatal(err)
	}
	type member struct {
		cmd  *exec.Cmd
		mu   sync.Mutex
		seen map[string]int32 // value -> partition
	}
	var members []*member
	for i := 0; i < 2; i++ {
		m := &member{seen: map[string]int32{}}
		m.cmd = exec.Command(kcat, "-b", n.KafkaAddr(), "-G", "kcat-group", "-q", "-u", "-f", "%p %s\n",
			"-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000", "kg")
		out, err := m.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.cmd.Process.Kill(); m.cmd.Wait() })
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var p int32
				var v string
				if _, err := fmt.Sscanf(sc.Text(), "%d %s", &p, &v); err == nil {
					m.mu.Lock()
					m.seen[v] = p
					m.mu.Unlock()
				}
			}
		}()
		members = append(members, m)
	}
	// Wait until both members hold partitions.
	for deadline := time.Now().Add(60 * time.Second); ; {
		dg, err := adm.DescribeGroups(ctx, "kcat-group")
		if err == nil {
			g := dg["kcat-group"]
			assigned := 0
			for _, m := range g.Members {
				if ca, ok := m.Assigned.AsConsumer(); ok && len(ca.Topics) > 0 {
					assigned++
				}
			}
			if g.State == "Stable" && assigned == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two kcat members never both got partitions: %v", err)
		}
		<-time.After(100 * time.Millisecond)
	}
	prod := tcpClient(t, n, kgo.DefaultProduceTopic("kg"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	const total = 600
	for i := 0; i < total; i++ {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("v%04d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		all := map[string]bool{}
		for _, m := range members {
			m.mu.Lock()
			for v := range m.seen {
				all[v] = true
			}
			m.mu.Unlock()
		}
		if len(all) == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("together the kcat members read %d of %d", len(all), total)
		}
		<-time.After(100 * time.Millisecond)
	}
	parts := []map[int32]bool{{}, {}}
	for i, m := range members {
		m.mu.Lock()
		for _, p := range m.seen {
			parts[i][p] = true
		}
		if len(m.seen) == 0 {
			t.Errorf("kcat member %d read nothing", i)
		}
		m.mu.Unlock()
	}
	for p := range parts[0] {
		if parts[1][p] {
			t.Fatalf("both members read partition %d", p)
		}
	}
}

// TestWritebackBytesReachesTheLogs checks io.writeback_bytes: its
// default and 0 reach the partition logs, and a negative size is refused.
func TestWritebackBytesReachesTheLogs(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	if got := brokerConfig(cfg, nil, nil).LogBase.WritebackBytes; got != 256<<10 {
		t.Errorf("by default segments start writeback after %d bytes, want %d", got, 256<<10)
	}
	if err := cfg.Set("io.writeback_bytes", "0", config.Flag); err != nil {
		t.Fatal(err)
	}
	if got := brokerConfig(cfg, nil, nil).LogBase.WritebackBytes; got != 0 {
		t.Errorf("io.writeback_bytes 0: segments start writeback after %d bytes", got)
	}
	err := cfg.Set("io.writeback_bytes", "-4KiB", config.Flag)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "io.writeback_bytes") {
		t.Errorf("io.writeback_bytes -4KiB: %v; want an error naming the key", err)
	}
}
