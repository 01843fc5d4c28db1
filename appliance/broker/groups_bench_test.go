package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkRebalance measures how long a group of 10 new members takes to
// settle on a 100-partition topic: from the first member's start until all
// ten own exactly ten partitions each, with the classic cooperative-sticky
// protocol and with KIP-848.
func BenchmarkRebalance(b *testing.B) {
	for _, proto := range []string{"classic", "kip848"} {
		b.Run(proto, func(b *testing.B) {
			n := startNode(b, b.TempDir(), fastGroups)
			if _, err := n.admin().CreateTopic(context.Background(), 100, 1, nil, "reb"); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				var mu sync.Mutex
				owned := map[int]map[int32]bool{}
				done := make(chan struct{})
				var once sync.Once
				settled := func() bool {
					if len(owned) != 10 {
						return false
					}
					for _, ps := range owned {
						if len(ps) != 10 {
							return false
						}
					}
					return true
				}
				var clients []*kgo.Client
				for m := 0; m < 10; m++ {
					owned[m] = map[int32]bool{}
					onAssigned := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
						mu.Lock()
						defer mu.Unlock()
						for _, p := range ps["reb"] {
							owned[m][p] = true
						}
						if settled() {
							once.Do(func() { close(done) })
						}
					}
					onLost := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
						mu.Lock()
						defer mu.Unlock()
						for _, p := range ps["reb"] {
							delete(owned[m], p)
						}
					}
					opts := []kgo.Opt{kgo.SeedBrokers(n.addr), kgo.ConsumerGroup(fmt.Sprintf("reb-%d", i)), kgo.ConsumeTopics("reb"),
						kgo.OnPartitionsAssigned(onAssigned), kgo.OnPartitionsRevoked(onLost), kgo.OnPartitionsLost(onLost),
						kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(100 * time.Millisecond)}
					if proto == "kip848" {
						opts = append(opts, kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
					} else {
						opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()))
					}
					c, err := kgo.NewClient(opts...)
					if err != nil {
						b.Fatal(err)
					}
					clients = append(clients, c)
					go func() {
						for {
							ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
							c.PollFetches(ctx)
							cancel()
							select {
							case <-done:
								return
							default:
							}
						}
					}()
				}
				<-done
				b.StopTimer()
				for _, c := range clients {
					c.Close()
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkOffsetCommit measures durable offset commits: one partition per
// commit, and 100 partitions per commit.
func BenchmarkOffsetCommit(b *testing.B) {
	for _, parts := range []int{1, 100} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			n := startNode(b, b.TempDir(), fastGroups)
			ctx := context.Background()
			if _, err := n.admin().CreateTopic(ctx, int32(parts), 1, nil, "oc"); err != nil {
				b.Fatal(err)
			}
			adm := n.admin()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				os := kadm.Offsets{}
				for p := 0; p < parts; p++ {
					os.AddOffset("oc", int32(p), int64(i), -1)
				}
				if err := adm.CommitAllOffsets(ctx, "committer", os); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*parts)/b.Elapsed().Seconds(), "offsets/s")
		})
	}
}
