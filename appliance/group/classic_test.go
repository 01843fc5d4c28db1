package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeTopics is a fixed topic list.
type fakeTopics map[string]int32

func topicID(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	return id
}

func (f fakeTopics) ByName(name string) ([16]byte, int32, bool) {
	n, ok := f[name]
	return topicID(name), n, ok
}

func (f fakeTopics) ByID(id [16]byte) (string, int32, bool) {
	for name, n := range f {
		if topicID(name) == id {
			return name, n, true
		}
	}
	return "", 0, false
}

func (f fakeTopics) Names() []string {
	var out []string
	for name := range f {
		out = append(out, name)
	}
	sortStrings(out)
	return out
}

// script drives a coordinator through a scenario with a fake clock.
type script struct {
	t    *testing.T
	c    *Coordinator
	now  time.Time
	next RequestID
	// replies collects every reply by request id.
	replies map[RequestID]kmsg.Response
	records []Record
}

func newScript(t *testing.T) *script {
	cfg := DefaultConfig()
	cfg.InitialRebalanceDelay = 0
	return &script{t: t, c: New(cfg, fakeTopics{"t": 6, "u": 2}), now: time.Unix(1_700_000_000, 0), replies: map[RequestID]kmsg.Response{}}
}

func (s *script) take(o Output) {
	for _, r := range o.Replies {
		if _, dup := s.replies[r.To]; dup {
			s.t.Fatalf("request %d answered twice", r.To)
		}
		s.replies[r.To] = r.Resp
	}
	s.records = append(s.records, o.Records...)
}

func (s *script) advance(d time.Duration) {
	s.now = s.now.Add(d)
	s.take(s.c.Tick(s.now))
}

func (s *script) join(member, instance string) RequestID {
	s.next++
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 9
	r.Group, r.MemberID, r.ProtocolType = "g", member, "consumer"
	r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10_000, 30_000
	if instance != "" {
		r.InstanceID = &instance
	}
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte("m-" + member)}}
	s.take(s.c.JoinGroup(s.now, s.next, ClientInfo{ClientID: "c"}, r))
	return s.next
}

func (s *script) joinResp(id RequestID) *kmsg.JoinGroupResponse {
	s.t.Helper()
	r, ok := s.replies[id]
	if !ok {
		return nil
	}
	return r.(*kmsg.JoinGroupResponse)
}

func (s *script) sync(member string, gen int32, assign map[string]string) RequestID {
	s.next++
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation = "g", member, gen
	for m, a := range assign {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: []byte(a)})
	}
	s.take(s.c.SyncGroup(s.now, s.next, r))
	return s.next
}

func (s *script) heartbeat(member string, gen int32) int16 {
	s.next++
	r := kmsg.NewPtrHeartbeatRequest()
	r.Group, r.MemberID, r.Generation = "g", member, gen
	s.take(s.c.Heartbeat(s.now, s.next, r))
	return s.replies[s.next].(*kmsg.HeartbeatResponse).ErrorCode
}

func (s *script) commit(member string, gen int32, topic string, part int32, off int64) int16 {
	s.next++
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 8
	r.Group, r.MemberID, r.Generation = "g", member, gen
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: part, Offset: off, LeaderEpoch: -1}}}}
	s.take(s.c.OffsetCommit(s.now, s.next, r))
	return s.replies[s.next].(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

// joinNew joins with an empty member id, then again with the id the
// coordinator hands out (KIP-394); it returns the second request's id.
func (s *script) joinNew() (string, RequestID) {
	s.t.Helper()
	first := s.join("", "")
	jr := s.joinResp(first)
	if jr == nil || jr.ErrorCode != kerr.MemberIDRequired.Code || jr.MemberID == "" {
		s.t.Fatalf("first join: %+v", jr)
	}
	return jr.MemberID, s.join(jr.MemberID, "")
}

func TestRebalanceCompletes(t *testing.T) {
	s := newScript(t)
	a, ja := s.joinNew()
	jr := s.joinResp(ja)
	if jr == nil || jr.ErrorCode != 0 || jr.Generation != 1 || jr.LeaderID != a || len(jr.Members) != 1 {
		t.Fatalf("first member's join: %+v", jr)
	}
	if st := s.c.groups["g"].State(); st != StateCompletingRebalance {
		t.Fatalf("state %s", st)
	}
	sa := s.sync(a, 1, map[string]string{a: "all"})
	if r := s.replies[sa].(*kmsg.SyncGroupResponse); r.ErrorCode != 0 || string(r.MemberAssignment) != "all" {
		t.Fatalf("sync: %+v", r)
	}
	// A second member joins: the first must rejoin (its heartbeat says
	// so), then both get generation 2.
	b, jb := s.joinNew()
	if s.joinResp(jb) != nil {
		t.Fatal("the join completed before the existing member rejoined")
	}
	if code := s.heartbeat(a, 1); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat during rebalance: %d", code)
	}
	ja2 := s.join(a, "")
	ra, rb := s.joinResp(ja2), s.joinResp(jb)
	if ra == nil || rb == nil || ra.Generation != 2 || rb.Generation != 2 || ra.LeaderID != a || len(ra.Members) != 2 || len(rb.Members) != 0 {
		t.Fatalf("second rebalance: leader %+v, follower %+v", ra, rb)
	}
	// The follower's sync waits for the leader's.
	sb := s.sync(b, 2, nil)
	if _, done := s.replies[sb]; done {
		t.Fatal("follower sync answered before the leader synced")
	}
	s.sync(a, 2, map[string]string{a: "p0-2", b: "p3-5"})
	if r := s.replies[sb].(*kmsg.SyncGroupResponse); r.ErrorCode != 0 || string(r.MemberAssignment) != "p3-5" {
		t.Fatalf("follower sync: %+v", r)
	}
	if st := s.c.groups["g"].State(); st != StateStable {
		t.Fatalf("state %s", st)
	}
	if len(s.records) == 0 {
		t.Fatal("no group metadata persisted")
	}
}

func TestSessionExpiryRemovesAMember(t *testing.T) {
	s := newScript(t)
	a, _ := s.joinNew()
	s.sync(a, 1, map[string]string{a: "x"})
	b, jb := s.joinNew()
	s.join(a, "")
	s.sync(a, 2, map[string]string{a: "1", b: "2"})
	s.sync(b, 2, nil)
	_ = jb
	// b heartbeats; a goes silent past its 10 s session.
	for i := 0; i < 4; i++ {
		s.advance(3 * time.Second)
		if code := s.heartbeat(b, s.c.groups["g"].classic.generation); code != 0 && code != kerr.RebalanceInProgress.Code {
			t.Fatalf("b's heartbeat: %d", code)
		}
	}
	cs := s.c.groups["g"].classic
	if _, still := cs.members[a]; still {
		t.Fatal("the silent member was not expired")
	}
	if cs.state != StatePreparingRebalance {
		t.Fatalf("after the expiry: %s", cs.state)
	}
	// b rejoins and the group settles with b alone, generation 3.
	jb3 := s.join(b, "")
	if r := s.joinResp(jb3); r == nil || r.Generation != 3 || r.LeaderID != b {
		t.Fatalf("rejoin after expiry: %+v", r)
	}
	s.sync(b, 3, map[string]string{b: "all"})
	// The expired member is fenced.
	if code := s.heartbeat(a, 2); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member's heartbeat: %d", code)
	}
	if code := s.commit(a, 2, "t", 0, 5); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member's commit: %d", code)
	}
}

func TestStaticMemberRejoinsWithoutRebalance(t *testing.T) {
	s := newScript(t)
	j1 := s.join("", "inst-1")
	r1 := s.joinResp(j1)
	if r1 == nil || r1.ErrorCode != 0 {
		t.Fatalf("static join needs no member-id round trip: %+v", r1)
	}
	j2 := s.join("", "inst-2")
	_ = j2
	if s.joinResp(j2) != nil {
		t.Fatal("join completed before the first member rejoined")
	}
	s.join(r1.MemberID, "inst-1")
	r2 := s.joinResp(j2)
	gen := r2.Generation
	leader := r2.LeaderID
	s.sync(leader, gen, map[string]string{r1.MemberID: "A", r2.MemberID: "B"})
	other := r2.MemberID
	if leader == other {
		other = r1.MemberID
	}
	s.sync(other, gen, nil)
	// inst-2 restarts: it rejoins with no member id and gets a new one,
	// the same generation and its old assignment, with no rebalance.
	j3 := s.join("", "inst-2")
	r3 := s.joinResp(j3)
	if r3 == nil || r3.ErrorCode != 0 || r3.Generation != gen || r3.MemberID == r2.MemberID {
		t.Fatalf("static rejoin: %+v", r3)
	}
	if st := s.c.groups["g"].State(); st != StateStable {
		t.Fatalf("static rejoin triggered a rebalance: %s", st)
	}
	sr := s.sync(r3.MemberID, gen, nil)
	if r := s.replies[sr].(*kmsg.SyncGroupResponse); r.ErrorCode != 0 || string(r.MemberAssignment) != "B" {
		t.Fatalf("static member's assignment after rejoin: %+v", r)
	}
	// The old instance is fenced.
	if code := s.heartbeat(r2.MemberID, gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("old member id of a replaced static member: %d", code)
	}
}

func TestCommitFencing(t *testing.T) {
	s := newScript(t)
	a, _ := s.joinNew()
	s.sync(a, 1, map[string]string{a: "x"})
	cases := []struct {
		name   string
		member string
		gen    int32
		topic  string
		part   int32
		want   *kerr.Error
	}{
		{"current generation", a, 1, "t", 0, nil},
		{"stale generation", a, 0, "t", 1, kerr.IllegalGeneration},
		{"future generation", a, 7, "t", 1, kerr.IllegalGeneration},
		{"unknown member", "stranger", 1, "t", 1, kerr.UnknownMemberID},
		{"unknown topic", a, 1, "nope", 0, kerr.UnknownTopicOrPartition},
		{"partition out of range", a, 1, "t", 6, kerr.UnknownTopicOrPartition},
	}
	for _, c := range cases {
		code := s.commit(c.member, c.gen, c.topic, c.part, 42)
		want := int16(0)
		if c.want != nil {
			want = c.want.Code
		}
		if code != want {
			t.Errorf("%s: code %d, want %d", c.name, code, want)
		}
	}
	// A rebalance in its sync phase refuses commits of the generation.
	s.joinNew()
	s.join(a, "")
	if code := s.commit(a, 2, "t", 0, 43); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("commit while completing a rebalance: %d", code)
	}
}

func TestBadJoins(t *testing.T) {
	s := newScript(t)
	a, _ := s.joinNew()
	s.sync(a, 1, map[string]string{a: "x"})
	try := func(mut func(*kmsg.JoinGroupRequest)) int16 {
		s.next++
		r := kmsg.NewPtrJoinGroupRequest()
		r.Version = 9
		r.Group, r.ProtocolType = "g", "consumer"
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10_000, 30_000
		r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
		mut(r)
		s.take(s.c.JoinGroup(s.now, s.next, ClientInfo{}, r))
		return s.replies[s.next].(*kmsg.JoinGroupResponse).ErrorCode
	}
	cases := map[string]struct {
		mut  func(*kmsg.JoinGroupRequest)
		want *kerr.Error
	}{
		"other protocol type": {func(r *kmsg.JoinGroupRequest) { r.ProtocolType = "connect" }, kerr.InconsistentGroupProtocol},
		"no common protocol":  {func(r *kmsg.JoinGroupRequest) { r.Protocols[0].Name = "roundrobin" }, kerr.InconsistentGroupProtocol},
		"no protocols":        {func(r *kmsg.JoinGroupRequest) { r.Protocols = nil }, kerr.InconsistentGroupProtocol},
		"empty group id":      {func(r *kmsg.JoinGroupRequest) { r.Group = "" }, kerr.InvalidGroupID},
		"session too short":   {func(r *kmsg.JoinGroupRequest) { r.SessionTimeoutMillis = 10 }, kerr.InvalidSessionTimeout},
		"oversized metadata":  {func(r *kmsg.JoinGroupRequest) { r.Protocols[0].Metadata = make([]byte, 2<<20) }, kerr.InvalidRequest},
		"unknown member":      {func(r *kmsg.JoinGroupRequest) { r.MemberID = "ghost" }, kerr.UnknownMemberID},
	}
	for name, c := range cases {
		if code := try(c.mut); code != c.want.Code {
			t.Errorf("%s: %d, want %d", name, code, c.want.Code)
		}
	}
	if st := s.c.groups["g"].State(); st != StateStable {
		t.Fatalf("bad joins disturbed the group: %s", st)
	}
}

func TestOffsetsPersistAndReload(t *testing.T) {
	s := newScript(t)
	a, _ := s.joinNew()
	s.sync(a, 1, map[string]string{a: "x"})
	s.commit(a, 1, "t", 2, 99)
	s.commit(a, 1, "u", 1, 7)
	// Replay what was persisted into a new coordinator.
	c2 := New(DefaultConfig(), fakeTopics{"t": 6, "u": 2})
	for _, r := range s.records {
		if err := c2.Load(r.Key, r.Value, s.now); err != nil {
			t.Fatal(err)
		}
	}
	c2.FinishLoad(s.now)
	g := c2.groups["g"]
	if g == nil || g.offsets[topicPartition{"t", 2}].Offset != 99 || g.offsets[topicPartition{"u", 1}].Offset != 7 {
		t.Fatalf("reloaded offsets: %+v", g)
	}
	if g.classic.state != StateStable || g.classic.generation != 1 || g.classic.members[a] == nil {
		t.Fatalf("reloaded group: %+v", g.classic)
	}
	// The restored member carries on without rejoining.
	s2 := &script{t: t, c: c2, now: s.now, next: 1000, replies: map[RequestID]kmsg.Response{}}
	if code := s2.heartbeat(a, 1); code != 0 {
		t.Fatalf("heartbeat of a restored member: %d", code)
	}
}

func TestEmptyGroupOffsetsExpire(t *testing.T) {
	s := newScript(t)
	// A standalone consumer commits with generation -1.
	if code := s.commit("", -1, "t", 0, 5); code != 0 {
		t.Fatalf("standalone commit: %d", code)
	}
	s.advance(6 * 24 * time.Hour)
	if _, ok := s.c.groups["g"]; !ok {
		t.Fatal("offsets expired early")
	}
	before := len(s.records)
	s.advance(2 * 24 * time.Hour)
	if _, ok := s.c.groups["g"]; ok {
		t.Fatal("offsets of an empty group outlived the retention")
	}
	if len(s.records) <= before || s.records[len(s.records)-1].Value != nil {
		t.Fatal("expiry wrote no tombstones")
	}
}
