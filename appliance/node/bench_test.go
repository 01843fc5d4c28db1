package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
)

// benchNode starts a node for benchmarks. Its data lives under the test
// temporary directory: TMPDIR picks the disk (/dev/shm takes the disk out).
func benchNode(b *testing.B) *Node {
	dir := b.TempDir()
	cfg := testConfig(b, dir)
	return startNode(b, cfg)
}

func benchClient(b testing.TB, n *Node, transport string, opts ...kgo.Opt) *kgo.Client {
	if transport == "quic" {
		return quicClient(b, n, opts...)
	}
	return tcpClient(b, n, opts...)
}

// randomValue is a 1 KiB incompressible record value.
func randomValue() []byte {
	v := make([]byte, 1024)
	rand.Read(v)
	return v
}

// produceAll produces b.N records made by rec through c and returns when
// every one is acknowledged. It uses the b.N loop rather than b.Loop, which
// stops the timer when it ends: with records still buffered in the client,
// the wait for their acknowledgements must count.
func produceAll(b *testing.B, c *kgo.Client, rec func(i int) *kgo.Record) {
	b.ResetTimer()
	produceCount(b, c, b.N, rec)
}

// produceCount produces n records made by rec through c and returns when
// every one is acknowledged.
func produceCount(b *testing.B, c *kgo.Client, n int, rec func(i int) *kgo.Record) {
	var wg sync.WaitGroup
	var errOnce sync.Once
	ctx := context.Background()
	for i := 0; i < n; i++ {
		wg.Add(1)
		c.Produce(ctx, rec(i), func(_ *kgo.Record, err error) {
			if err != nil {
				errOnce.Do(func() { b.Error(err) })
			}
			wg.Done()
		})
	}
	wg.Wait()
}

// throughputClient is a producer tuned for bulk: acks=all with
// idempotence, batches up to 1 MiB, no compression.
func throughputClient(b testing.TB, n *Node, transport, topic string) *kgo.Client {
	return benchClient(b, n, transport, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(1<<16), kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
}

// lasting hands a sub-benchmark's setup to its parent: the cleanups and
// temporary directories it registers outlive the rounds of b.N (the
// testing package runs a benchmark's cleanups after every round), so a
// node started in the first round serves them all.
type lasting struct {
	testing.TB
	parent testing.TB
}

func (l lasting) Cleanup(f func()) { l.parent.Cleanup(f) }
func (l lasting) TempDir() string  { return l.parent.TempDir() }

// BenchmarkProduce measures franz-go producing 1 KiB records with acks=all
// and idempotence (every acknowledged record fdatasync'd by group commit),
// over TCP and over QUIC, to 1 and 8 partitions. Each case has its own
// node, started outside the timing.
func BenchmarkProduce(b *testing.B) {
	for _, transport := range []string{"tcp", "quic"} {
		for _, parts := range []int{1, 8} {
			var c *kgo.Client
			val := randomValue()
			b.Run(fmt.Sprintf("transport=%s/partitions=%d", transport, parts), func(sb *testing.B) {
				if c == nil {
					t := lasting{sb, b}
					n := startNode(t, testConfig(t, t.TempDir()))
					if _, err := kadm.NewClient(benchClient(t, n, transport)).CreateTopic(context.Background(), int32(parts), 1, nil, "bench"); err != nil {
						sb.Fatal(err)
					}
					c = throughputClient(t, n, transport, "bench")
				}
				sb.SetBytes(int64(len(val)))
				produceAll(sb, c, func(i int) *kgo.Record { return &kgo.Record{Value: val, Partition: int32(i % parts)} })
			})
		}
	}
}

// BenchmarkConsume measures franz-go reading 1 KiB records back from the
// page cache, over TCP and over QUIC, from 1 and 8 partitions.
func BenchmarkConsume(b *testing.B) {
	for _, transport := range []string{"tcp", "quic"} {
		for _, parts := range []int{1, 8} {
			b.Run(fmt.Sprintf("transport=%s/partitions=%d", transport, parts), func(b *testing.B) {
				n := benchNode(b)
				topic := "bench"
				ctx := context.Background()
				if _, err := kadm.NewClient(tcpClient(b, n)).CreateTopic(ctx, int32(parts), 1, nil, topic); err != nil {
					b.Fatal(err)
				}
				// Fill enough for the run: 256 MiB, consumed repeatedly.
				const fill = 256 << 10
				p := tcpClient(b, n, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(1<<20), kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
				val := randomValue()
				var wg sync.WaitGroup
				for i := 0; i < fill; i++ {
					wg.Add(1)
					p.Produce(ctx, &kgo.Record{Value: val, Partition: int32(i % parts)}, func(_ *kgo.Record, err error) {
						if err != nil {
							b.Error(err)
						}
						wg.Done()
					})
				}
				wg.Wait()
				b.SetBytes(int64(len(val)))
				b.ResetTimer()
				read := 0
				for read < b.N {
					c := benchClient(b, n, transport, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16<<20))
					for got := 0; got < fill && read < b.N; {
						fs := c.PollFetches(ctx)
						k := fs.NumRecords()
						got += k
						read += k
					}
					c.Close()
				}
			})
		}
	}
}

// BenchmarkQUICBulk is the transport's ceiling: one quic-go stream on
// loopback carrying bytes as fast as it can, with the node's QUIC settings
// and TLS, no Kafka and no disk.
func BenchmarkQUICBulk(b *testing.B) {
	n := benchNode(b)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg := n.Config().Listeners.QUIC
	srv, err := quic.NewServer(udp, n.Identity().ServerConfig(), quic.Config{
		InitialStreamWindow: uint64(cfg.InitialStreamWindow), MaxStreamWindow: uint64(cfg.MaxStreamWindow),
		InitialConnWindow: uint64(cfg.InitialConnWindow), MaxConnWindow: uint64(cfg.MaxConnWindow),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv.Handle("bench-bulk", func(ctx context.Context, c *quicgo.Conn) {
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		io.Copy(io.Discard, s)
		s.Write([]byte{1})
		s.Close()
		<-ctx.Done()
	})
	go srv.Serve(context.Background())
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	tlsConf, err := tlsid.ClientConfig(tlsid.ClientOptions{CAPEM: n.Identity().CAPEM, NextProtos: []string{"bench-bulk"}, ServerName: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	conn, err := quicgo.DialAddr(context.Background(), srv.Addr().String(), tlsConf, &quicgo.Config{
		InitialStreamReceiveWindow: uint64(cfg.InitialStreamWindow), MaxStreamReceiveWindow: uint64(cfg.MaxStreamWindow),
		InitialConnectionReceiveWindow: uint64(cfg.InitialConnWindow), MaxConnectionReceiveWindow: uint64(cfg.MaxConnWindow),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	one := make([]byte, 1)
	if _, err := io.ReadFull(s, one); err != nil { // everything arrived
		b.Fatal(err)
	}
}

// BenchmarkProduceIOProfile compares the built-in storage settings with
// the io-profile derived for the disk under the benchmark's directory
// (probed once, 10 s, outside the timing). Two nodes run side by side, one
// per profile, and every measurement alternates between them in short
// turns, so a drift of the shared disk's speed affects both alike:
// franz-go over TCP producing 1 KiB records with acks=all to 8 partitions
// as fast as it can (MB/s), open loop at 10,000 records/s (p50 and p99 of
// each record's acknowledgement, from when it was due), and one record at
// a time to one partition (the durable round trip).
func BenchmarkProduceIOProfile(b *testing.B) {
	profiled := b.TempDir()
	if _, _, err := disk.Ensure(context.Background(), profiled, disk.EnsureOptions{Budget: 10 * time.Second, Force: true}); err != nil {
		b.Fatal(err)
	}
	profiles := []string{"builtin", "tuned"}
	nodes := map[string]*Node{}
	for _, profile := range profiles {
		opts := config.LoadOptions{}
		if profile == "tuned" {
			opts.IOProfile = disk.TOMLPath(profiled)
		}
		cfg, err := config.Load(opts)
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range map[string]string{"node.data_dir": b.TempDir(), "listeners.kafka.addr": "127.0.0.1:0", "listeners.quic.addr": "",
			"admin.addr": "", "logging.level": "warn", "disk.tuning": "off"} {
			if err := cfg.Set(k, v, config.Flag); err != nil {
				b.Fatal(err)
			}
		}
		n := startNode(b, cfg)
		adm := kadm.NewClient(tcpClient(b, n))
		if _, err := adm.CreateTopic(context.Background(), 8, 1, nil, "bench"); err != nil {
			b.Fatal(err)
		}
		if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, "one"); err != nil {
			b.Fatal(err)
		}
		nodes[profile] = n
	}
	val := randomValue()
	ctx := context.Background()

	b.Run("mode=throughput", func(b *testing.B) {
		// Turns of 20,000 records each; b.N records per profile.
		clients := map[string]*kgo.Client{}
		for _, p := range profiles {
			clients[p] = throughputClient(b, nodes[p], "tcp", "bench")
		}
		took := map[string]time.Duration{}
		for done := 0; done < b.N; {
			k := min(20_000, b.N-done)
			for _, p := range profiles {
				t0 := time.Now()
				produceCount(b, clients[p], k, func(i int) *kgo.Record { return &kgo.Record{Value: val, Partition: int32(i % 8)} })
				took[p] += time.Since(t0)
			}
			done += k
		}
		for _, p := range profiles {
			b.ReportMetric(float64(b.N)*float64(len(val))/took[p].Seconds()/1e6, p+"-MB/s")
		}
	})
	b.Run("mode=rate-10k", func(b *testing.B) {
		// Turns of one second (10,000 records) each, open loop: a stall
		// counts for every record it delays.
		clients := map[string]*kgo.Client{}
		for _, p := range profiles {
			clients[p] = tcpClient(b, nodes[p], kgo.DefaultProduceTopic("bench"), kgo.RequiredAcks(kgo.AllISRAcks()),
				kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
		}
		lat := map[string][]time.Duration{}
		const interval = 100 * time.Microsecond
		for done := 0; done < b.N; {
			k := min(10_000, b.N-done)
			for _, p := range profiles {
				var mu sync.Mutex
				var wg sync.WaitGroup
				start := time.Now()
				for i := range k {
					due := start.Add(time.Duration(i) * interval)
					if d := time.Until(due); d > 0 {
						time.Sleep(d) // pacing the offered load, not synchronisation
					}
					wg.Add(1)
					clients[p].Produce(ctx, &kgo.Record{Value: val, Partition: int32(i % 8)}, func(_ *kgo.Record, err error) {
						d := time.Since(due)
						if err != nil {
							b.Error(err)
						}
						mu.Lock()
						lat[p] = append(lat[p], d)
						mu.Unlock()
						wg.Done()
					})
				}
				wg.Wait()
			}
			done += k
		}
		for _, p := range profiles {
			reportLatency(b, p+"-", lat[p])
		}
	})
	b.Run("mode=one-at-a-time", func(b *testing.B) {
		clients := map[string]*kgo.Client{}
		for _, p := range profiles {
			clients[p] = tcpClient(b, nodes[p], kgo.DefaultProduceTopic("one"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
		}
		lat := map[string][]time.Duration{}
		for range b.N {
			for _, p := range profiles {
				t0 := time.Now()
				if err := clients[p].ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil {
					b.Fatal(err)
				}
				lat[p] = append(lat[p], time.Since(t0))
			}
		}
		for _, p := range profiles {
			reportLatency(b, p+"-", lat[p])
		}
	})
}

// reportLatency adds p50 and p99 of lat (in µs) to the benchmark's
// output, their units prefixed by prefix.
func reportLatency(b *testing.B, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), prefix+"p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), prefix+"p99-µs")
}
