package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/group"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fastGroups makes group timeouts short enough for tests.
func fastGroups(c *Config, _ *storage.Config) {
	c.Groups = group.DefaultConfig()
	c.Groups.MinSessionTimeout = 100 * time.Millisecond
	c.Groups.InitialRebalanceDelay = 0
	c.Groups.ConsumerSessionTimeout = 2 * time.Second
	c.Groups.ConsumerHeartbeatInterval = 100 * time.Millisecond
}

// ownership follows assignment callbacks of every member and records any
// moment a partition is owned by two live members.
type ownership struct {
	mu         sync.Mutex
	owner      map[int32]string
	dead       map[string]bool
	violations []string
	events     int
}

func newOwnership() *ownership {
	return &ownership{owner: map[int32]string{}, dead: map[string]bool{}}
}

func (o *ownership) assigned(member string, ps map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead[member] {
		return
	}
	o.events++
	for _, p := range ps["grp"] {
		if cur, ok := o.owner[p]; ok && cur != member && !o.dead[cur] {
			o.violations = append(o.violations, fmt.Sprintf("partition %d given to %s while %s owns it", p, member, cur))
		}
		o.owner[p] = member
	}
}

func (o *ownership) released(member string, ps map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps["grp"] {
		if o.owner[p] == member {
			delete(o.owner, p)
		}
	}
}

// kill marks a member dead: it stops processing, so what it owned is free.
func (o *ownership) kill(member string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead[member] = true
	for p, m := range o.owner {
		if m == member {
			delete(o.owner, p)
		}
	}
}

// killableDialer hands out TCP connections it can cut all at once, to
// stop a client dead (no LeaveGroup, no more heartbeats).
type killableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func (k *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead {
		return nil, errors.New("killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		k.conns = append(k.conns, c)
	}
	return c, err
}

func (k *killableDialer) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dead = true
	for _, c := range k.conns {
		c.Close()
	}
}

// runGroupScenario: 3 members over 12 partitions while a producer writes;
// one member is killed mid-stream. Every record is consumed at least once
// and no partition is ever owned by two live members.
func runGroupScenario(t *testing.T, wantType string, groupOpts ...kgo.Opt) {
	n := startNode(t, t.TempDir(), fastGroups)
	ctx := ctxT(t)
	if _, err := n.admin().CreateTopic(ctx, 12, 1, nil, "grp"); err != nil {
		t.Fatal(err)
	}
	own := newOwnership()
	type consumed struct {
		mu   sync.Mutex
		seen map[int32]map[int64]bool
	}
	got := consumed{seen: map[int32]map[int64]bool{}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	dialers := make([]*killableDialer, 3)
	clients := make([]*kgo.Client, 3)
	for i := range clients {
		name := fmt.Sprintf("member-%d", i)
		dialers[i] = &killableDialer{}
		opts := append([]kgo.Opt{
			kgo.SeedBrokers(n.addr), kgo.Dialer(dialers[i].dial), kgo.ConsumerGroup("g-" + t.Name()), kgo.ConsumeTopics("grp"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond),
			kgo.RebalanceTimeout(5 * time.Second), kgo.MetadataMinAge(100 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { own.assigned(name, ps) }),
			kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, ps map[string][]int32) {
				own.released(name, ps)
				cl.CommitMarkedOffsets(context.Background())
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { own.released(name, ps) }),
		}, groupOpts...)
		c, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				fs := c.PollFetches(pctx)
				cancel()
				got.mu.Lock()
				fs.EachRecord(func(r *kgo.Record) {
					if got.seen[r.Partition] == nil {
						got.seen[r.Partition] = map[int64]bool{}
					}
					got.seen[r.Partition][r.Offset] = true
				})
				got.mu.Unlock()
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	prod := n.client(kgo.DefaultProduceTopic("grp"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	const total = 12_000
	var pwg sync.WaitGroup
	for i := 0; i < total; i++ {
		if i == total/2 {
			// Mid-stream, kill member 1: no leave, no more heartbeats.
			own.kill("member-1")
			dialers[1].kill()
		}
		pwg.Add(1)
		prod.Produce(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
			pwg.Done()
		})
		if i%1000 == 0 {
			prod.Flush(ctx)
		}
	}
	pwg.Wait()
	end, err := n.admin().ListEndOffsets(ctx, "grp")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the survivors have read everything.
	deadline := time.After(60 * time.Second)
	for {
		missing := 0
		got.mu.Lock()
		end.Each(func(o kadm.ListedOffset) {
			for off := int64(0); off < o.Offset; off++ {
				if !got.seen[o.Partition][off] {
					missing++
				}
			}
		})
		got.mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d records never consumed", missing)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The group settles with every partition owned by a survivor. On a
	// loaded machine a survivor may miss a heartbeat and cause one more
	// rebalance, so this waits for the settled state rather than sampling.
	settle := time.After(60 * time.Second)
	for {
		own.mu.Lock()
		owners := map[string]bool{}
		for _, m := range own.owner {
			owners[m] = true
		}
		var names []string
		for m := range owners {
			names = append(names, m)
		}
		sort.Strings(names)
		settled := len(own.owner) == 12 && !owners["member-1"]
		count := len(own.owner)
		own.mu.Unlock()
		if settled {
			break
		}
		select {
		case <-settle:
			t.Fatalf("final ownership of %d partitions by %v", count, names)
		case <-time.After(50 * time.Millisecond):
		}
	}
	close(stop)
	wg.Wait()
	own.mu.Lock()
	defer own.mu.Unlock()
	if len(own.violations) > 0 {
		t.Fatalf("double ownership: %v", own.violations)
	}
	if own.events < 3 {
		t.Fatalf("only %d assignment events: the group never rebalanced", own.events)
	}
	// The group ran the protocol asked for.
	rc := dialRaw(t, n.addr)
	lg := rc.roundTrip(&kmsg.ListGroupsRequest{Version: 5}).(*kmsg.ListGroupsResponse)
	found := false
	for _, g := range lg.Groups {
		if g.Group == "g-"+t.Name() {
			found = true
			if g.GroupType != wantType {
				t.Fatalf("group type %q, want %q", g.GroupType, wantType)
			}
		}
	}
	if !found {
		t.Fatalf("group not listed: %+v", lg.Groups)
	}
}

func TestGroupEager(t *testing.T) {
	runGroupScenario(t, "classic", kgo.Balancers(kgo.RangeBalancer()))
}

func TestGroupCooperativeSticky(t *testing.T) {
	runGroupScenario(t, "classic", kgo.Balancers(kgo.CooperativeStickyBalancer()))
}

func TestGroupKIP848(t *testing.T) {
	runGroupScenario(t, "consumer", kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
}

// TestCommitRestartResume: a group commits, the broker restarts (cleanly or
// after a crash), and the group resumes at the committed offsets.
func TestCommitRestartResume(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			dir := t.TempDir()
			n := startNode(t, dir, fastGroups)
			ctx := ctxT(t)
			if _, err := n.admin().CreateTopic(ctx, 3, 1, nil, "res"); err != nil {
				t.Fatal(err)
			}
			prod := n.client(kgo.DefaultProduceTopic("res"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
			for i := 0; i < 300; i++ {
				if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			consume := func(n *testNode, want int) map[string]bool {
				c := n.client(kgo.ConsumerGroup("resumers"), kgo.ConsumeTopics("res"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
					kgo.DisableAutoCommit(), kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100*time.Millisecond))
				seen := map[string]bool{}
				for len(seen) < want {
					fs := c.PollFetches(ctx)
					if ctx.Err() != nil {
						t.Fatalf("read %d of %d", len(seen), want)
					}
					fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
				}
				if err := c.CommitUncommittedOffsets(ctx); err != nil {
					t.Fatalf("commit: %v", err)
				}
				c.LeaveGroup()
				return seen
			}
			first := consume(n, 300)
			for i := 300; i < 450; i++ {
				if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			addr := n.addr
			if clean {
				n.stop()
			} else {
				n.crash()
			}
			n = startNodeAt(t, dir, addr, fastGroups)
			// The committed offsets survived the restart.
			offs, err := n.admin().FetchOffsets(ctx, "resumers")
			if err != nil {
				t.Fatal(err)
			}
			total := int64(0)
			offs.Each(func(o kadm.OffsetResponse) { total += o.At })
			if total != 300 {
				t.Fatalf("committed offsets after restart sum to %d, want 300", total)
			}
			second := consume(n, 150)
			for v := range second {
				if first[v] {
					t.Fatalf("record %s consumed again after the restart: the group did not resume at its commit", v)
				}
			}
			if len(second) != 150 {
				t.Fatalf("read %d new records, want 150", len(second))
			}
		})
	}
}

// TestCommitFencingOnTheWire checks the codes a commit from a stale
// generation or an unknown member gets from a live group.
func TestCommitFencingOnTheWire(t *testing.T) {
	n := startNode(t, t.TempDir(), fastGroups)
	ctx := ctxT(t)
	if _, err := n.admin().CreateTopic(ctx, 1, 1, nil, "fence"); err != nil {
		t.Fatal(err)
	}
	c := n.client(kgo.ConsumerGroup("fencers"), kgo.ConsumeTopics("fence"), kgo.SessionTimeout(5*time.Second))
	var member string
	var gen int32
	for deadline := time.Now().Add(30 * time.Second); member == "" && time.Now().Before(deadline); {
		pollFor(c, 200*time.Millisecond)
		member, gen = c.GroupMetadata()
	}
	if member == "" {
		t.Fatal("the consumer never joined")
	}
	rc := dialRaw(t, n.addr)
	commit := func(memberID string, generation int32) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version = 8
		r.Group, r.MemberID, r.Generation = "fencers", memberID, generation
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "fence", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}}}
		return rc.roundTrip(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(member, gen-1); code != kerr.IllegalGeneration.Code {
		t.Fatalf("stale generation: %d", code)
	}
	if code := commit("intruder", gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: %d", code)
	}
	if code := commit(member, gen); code != 0 {
		t.Fatalf("the member's own commit: %d", code)
	}
}

// pollFor polls a client for at most d (joining a group happens in polls).
func pollFor(c *kgo.Client, d time.Duration) kgo.Fetches {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.PollFetches(ctx)
}
