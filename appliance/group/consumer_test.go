package group

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// client848 models a KIP-848 client: it owns what the last assignment
// said, and reports it.
type client848 struct {
	id    string
	epoch int32
	owned assignment
	dead  bool
}

func (s *script) hb848(cl *client848, subscribe []string) *kmsg.ConsumerGroupHeartbeatResponse {
	s.t.Helper()
	s.next++
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID, r.MemberEpoch = "g", cl.id, cl.epoch
	r.RebalanceTimeoutMillis = 30_000
	r.SubscribedTopicNames = subscribe
	if cl.epoch > 0 {
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{} // owned: empty, not unknown
		for _, tp := range cl.owned.sorted() {
			r.Topics = append(r.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: tp.ID, Partitions: []int32{tp.Partition}})
		}
	}
	s.take(s.c.ConsumerGroupHeartbeat(s.now, s.next, ClientInfo{ClientID: "c"}, r))
	resp := s.replies[s.next].(*kmsg.ConsumerGroupHeartbeatResponse)
	if resp.ErrorCode == 0 {
		cl.epoch = resp.MemberEpoch
		if resp.Assignment != nil {
			cl.owned = assignment{}
			for _, t := range resp.Assignment.Topics {
				for _, p := range t.Partitions {
					cl.owned[tpid{t.TopicID, p}] = struct{}{}
				}
			}
		}
	}
	return resp
}

// checkExclusive fails if a partition is held by two members in the
// coordinator's view or owned by two live clients.
func checkExclusive(t *testing.T, s *script, clients []*client848, step string) {
	t.Helper()
	cs := s.c.groups["g"].consumer
	holder := map[tpid]string{}
	for id, m := range cs.members {
		for tp := range union(m.assigned, m.revoking) {
			if o, dup := holder[tp]; dup {
				t.Fatalf("%s: partition %v held by %s and %s", step, tp, o, id)
			}
			holder[tp] = id
		}
	}
	owner := map[tpid]string{}
	for _, cl := range clients {
		if cl.dead {
			continue
		}
		for tp := range cl.owned {
			if o, dup := owner[tp]; dup {
				t.Fatalf("%s: clients %s and %s both own %v", step, o, cl.id, tp)
			}
			owner[tp] = cl.id
		}
	}
}

func TestConsumerGroupReconciliation(t *testing.T) {
	for _, assignor := range []string{"uniform", "range"} {
		t.Run(assignor, func(t *testing.T) {
			s := newScript(t)
			s.c.cfg.DefaultAssignor = assignor
			rng := rand.New(rand.NewPCG(1, 2))
			var clients []*client848
			sub := []string{"t", "u"}
			addClient := func() {
				cl := &client848{id: fmt.Sprintf("m%d", len(clients)), owned: assignment{}}
				if r := s.hb848(cl, sub); r.ErrorCode != 0 {
					t.Fatalf("join: %d", r.ErrorCode)
				}
				clients = append(clients, cl)
			}
			addClient()
			if len(clients[0].owned) != 8 {
				t.Fatalf("a lone member owns %d of 8 partitions", len(clients[0].owned))
			}
			for step := 0; step < 400; step++ {
				switch {
				case step == 20 || step == 40 || step == 60:
					addClient()
				case step == 150:
					// A member dies silently: its session runs out.
					clients[1].dead = true
				case step == 250:
					// A member leaves cleanly.
					s.next++
					r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
					r.Group, r.MemberID, r.MemberEpoch = "g", clients[2].id, -1
					s.take(s.c.ConsumerGroupHeartbeat(s.now, s.next, ClientInfo{}, r))
					clients[2].dead = true
				default:
					cl := clients[rng.IntN(len(clients))]
					if cl.dead {
						continue
					}
					if r := s.hb848(cl, nil); r.ErrorCode != 0 {
						t.Fatalf("step %d: %s heartbeat: %d %v", step, cl.id, r.ErrorCode, r.ErrorMessage)
					}
				}
				s.advance(time.Second)
				checkExclusive(t, s, clients, fmt.Sprintf("step %d", step))
			}
			// Converged: live members own everything, evenly.
			total, live := 0, 0
			for _, cl := range clients {
				if !cl.dead {
					total += len(cl.owned)
					live++
				}
			}
			if total != 8 || live != 2 {
				t.Fatalf("%d live members own %d of 8 partitions", live, total)
			}
			if st := s.c.groups["g"].consumer.state(); st != "stable" {
				t.Fatalf("group state %s", st)
			}
		})
	}
}

func TestConsumerGroupFencing(t *testing.T) {
	s := newScript(t)
	a := &client848{id: "a", owned: assignment{}}
	s.hb848(a, []string{"t"})
	stale := *a
	b := &client848{id: "b", owned: assignment{}}
	s.hb848(b, []string{"t"})
	s.hb848(a, nil)
	s.hb848(a, nil)
	// A heartbeat from an epoch the member has left behind is fenced.
	stale.epoch = a.epoch + 5
	if r := s.hb848(&stale, nil); r.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("heartbeat from a future epoch: %d", r.ErrorCode)
	}
	ghost := &client848{id: "ghost", epoch: 3}
	if r := s.hb848(ghost, nil); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: %d", r.ErrorCode)
	}
	// Commits carry the member epoch in the generation field.
	commit := func(member string, epoch int32) int16 {
		s.next++
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version = 9
		r.Group, r.MemberID, r.Generation = "g", member, epoch
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}}}
		s.take(s.c.OffsetCommit(s.now, s.next, r))
		return s.replies[s.next].(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := commit("a", a.epoch); code != 0 {
		t.Fatalf("commit at the member epoch: %d", code)
	}
	if code := commit("a", a.epoch+1); code != kerr.FencedMemberEpoch.Code {
		t.Fatalf("commit from a future epoch: %d", code)
	}
	if code := commit("nobody", 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("commit from an unknown member: %d", code)
	}
	// Joining needs a subscription; an unknown assignor is refused.
	j := &client848{id: "c"}
	if r := s.hb848(j, nil); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("join without subscription: %d", r.ErrorCode)
	}
}

func TestAssignors(t *testing.T) {
	ids := map[string][16]byte{"t": topicID("t"), "u": topicID("u")}
	in := assignInput{
		members:    []string{"a", "b", "c"},
		subscribed: map[string]map[[16]byte]bool{"a": {ids["t"]: true, ids["u"]: true}, "b": {ids["t"]: true}, "c": {ids["t"]: true, ids["u"]: true}},
		partitions: map[[16]byte]int32{ids["t"]: 7, ids["u"]: 2},
	}
	for name, fn := range map[string]func(assignInput) map[string]assignment{"uniform": uniformAssign, "range": rangeAssign} {
		out := fn(in)
		seen := map[tpid]string{}
		for m, a := range out {
			for tp := range a {
				if o, dup := seen[tp]; dup {
					t.Fatalf("%s: %v given to %s and %s", name, tp, o, m)
				}
				if !in.subscribed[m][tp.ID] {
					t.Fatalf("%s: %s got %v of a topic it does not subscribe to", name, m, tp)
				}
				seen[tp] = m
			}
		}
		if len(seen) != 9 {
			t.Fatalf("%s: %d of 9 partitions assigned", name, len(seen))
		}
		if name == "uniform" {
			for m, a := range out {
				if len(a) < 2 || len(a) > 4 {
					t.Fatalf("uniform: %s has %d partitions", m, len(a))
				}
			}
			// Sticky: the same input with this output as the previous
			// target changes nothing.
			in2 := in
			in2.previous = out
			again := fn(in2)
			for m := range out {
				if !out[m].equal(again[m]) {
					t.Fatalf("uniform is not sticky for %s", m)
				}
			}
		}
	}
}
