package group

import (
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// consumerState is a KIP-848 consumer group: the broker computes a target
// assignment whenever the group epoch moves, and reconciles each member
// towards it incrementally: a member first gives up what it must revoke,
// and a partition goes to its new owner only once no one else holds it.
type consumerState struct {
	epoch           int32 // group epoch: bumped by membership and subscription changes
	assignmentEpoch int32 // epoch the target assignment was computed at
	assignor        string
	members         map[string]*consumerMember
	target          map[string]assignment
	statics         map[string]string // instance id -> member id
}

type consumerMember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	epoch            int32
	prevEpoch        int32
	subscribed       []string
	regex            *regexp.Regexp
	regexSrc         *string
	serverAssignor   string
	rebalanceTimeout time.Duration
	deadline         time.Time // session expiry
	assigned         assignment
	revoking         assignment // given up by the coordinator, not yet confirmed by the member
	revokeDeadline   time.Time
	sent             assignment // what the member was last told
}

func newConsumer() *consumerState {
	return &consumerState{members: map[string]*consumerMember{}, target: map[string]assignment{}, statics: map[string]string{}}
}

// classicState maps KIP-848 states to the names ListGroups reports.
func (cs *consumerState) classicState() string {
	switch cs.state() {
	case "empty":
		return StateEmpty
	case "stable":
		return StateStable
	}
	return StatePreparingRebalance
}

// state is the KIP-848 group state.
func (cs *consumerState) state() string {
	switch {
	case len(cs.members) == 0:
		return "empty"
	case cs.epoch > cs.assignmentEpoch:
		return "assigning"
	}
	for _, m := range cs.members {
		if m.epoch != cs.assignmentEpoch || len(m.revoking) > 0 || !m.assigned.equal(cs.target[m.id]) {
			return "reconciling"
		}
	}
	return "stable"
}

// subscribedNames resolves every member's subscription to topic names.
func (cs *consumerState) subscribedNames(topics Topics) map[string]bool {
	out := map[string]bool{}
	for _, m := range cs.members {
		for _, t := range m.topicNames(topics) {
			out[t] = true
		}
	}
	return out
}

func (m *consumerMember) topicNames(topics Topics) []string {
	if m.regex == nil {
		return m.subscribed
	}
	var out []string
	for _, t := range topics.Names() {
		if m.regex.MatchString(t) {
			out = append(out, t)
		}
	}
	return out
}

// ConsumerGroupHeartbeat handles KIP-848's one request: join (epoch 0),
// heartbeat and reconcile (the current epoch), and leave (epoch -1, or -2
// for a static member).
func (c *Coordinator) ConsumerGroupHeartbeat(now time.Time, id RequestID, ci ClientInfo, r *kmsg.ConsumerGroupHeartbeatRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	resp.HeartbeatIntervalMillis = int32(c.cfg.ConsumerHeartbeatInterval / time.Millisecond)
	fail := func(e *kerr.Error, msg string) Output {
		resp.ErrorCode = e.Code
		if msg != "" {
			resp.ErrorMessage = &msg
		}
		out.reply(id, resp)
		return out
	}
	if r.Group == "" {
		return fail(kerr.InvalidRequest, "the group id is empty")
	}
	g := c.getOrCreate(r.Group, TypeConsumer, now)
	if !g.convert(TypeConsumer) {
		return fail(kerr.GroupIDNotFound, fmt.Sprintf("group %s is a classic group with members", r.Group))
	}
	cs := g.consumer
	if cs.assignor == "" {
		cs.assignor = c.cfg.DefaultAssignor
	}
	switch {
	case r.MemberEpoch == 0:
		return c.consumerJoin(g, now, id, ci, r, resp)
	case r.MemberEpoch == -1 || r.MemberEpoch == -2:
		m, ok := cs.members[r.MemberID]
		if !ok {
			return fail(kerr.UnknownMemberID, "")
		}
		c.consumerRemove(g, m, now)
		resp.MemberID, resp.MemberEpoch = &m.id, r.MemberEpoch
		out.reply(id, resp)
		return out
	}
	m, ok := cs.members[r.MemberID]
	if !ok {
		return fail(kerr.UnknownMemberID, "")
	}
	owned := ownedFrom(r.Topics)
	if r.MemberEpoch != m.epoch {
		// A member that missed our last answer may still be at the
		// previous epoch, as long as it owns no more than it should.
		if r.MemberEpoch != m.prevEpoch || (owned != nil && !subset(owned, union(m.assigned, m.revoking))) {
			return fail(kerr.FencedMemberEpoch, fmt.Sprintf("member epoch %d, the member is at %d", r.MemberEpoch, m.epoch))
		}
	}
	if err := c.updateSubscription(g, m, r); err != nil {
		return fail(kerr.InvalidRequest, err.Error())
	}
	m.deadline = now.Add(c.cfg.ConsumerSessionTimeout)
	if r.RebalanceTimeoutMillis > 0 {
		m.rebalanceTimeout = time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	}
	c.reconcile(g, m, owned, now)
	c.fillHeartbeat(g, m, resp, false)
	out.reply(id, resp)
	return out
}

func (c *Coordinator) consumerJoin(g *Group, now time.Time, id RequestID, ci ClientInfo, r *kmsg.ConsumerGroupHeartbeatRequest, resp *kmsg.ConsumerGroupHeartbeatResponse) Output {
	var out Output
	cs := g.consumer
	if len(r.SubscribedTopicNames) == 0 && (r.SubscribedTopicRegex == nil || *r.SubscribedTopicRegex == "") {
		resp.ErrorCode = kerr.InvalidRequest.Code
		msg := "a joining member must subscribe to topic names or a regex"
		resp.ErrorMessage = &msg
		out.reply(id, resp)
		return out
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != "uniform" && *r.ServerAssignor != "range" {
		resp.ErrorCode = kerr.UnsupportedAssignor.Code
		out.reply(id, resp)
		return out
	}
	memberID := r.MemberID
	if memberID == "" {
		memberID = c.newMemberID(ci.ClientID, now)
	}
	if old, ok := cs.members[memberID]; ok {
		// A rejoin: the member lost its state; start it over.
		c.consumerRemove(g, old, now)
	}
	if r.InstanceID != nil {
		if oldID, ok := cs.statics[*r.InstanceID]; ok {
			if old := cs.members[oldID]; old != nil {
				c.consumerRemove(g, old, now)
			}
		}
	}
	if c.cfg.MaxGroupSize > 0 && len(cs.members) >= c.cfg.MaxGroupSize {
		resp.ErrorCode = kerr.GroupMaxSizeReached.Code
		out.reply(id, resp)
		return out
	}
	m := &consumerMember{
		id: memberID, instanceID: r.InstanceID, rackID: r.RackID, clientID: ci.ClientID, clientHost: ci.ClientHost,
		rebalanceTimeout: time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond,
		assigned:         assignment{}, revoking: assignment{},
	}
	if err := c.updateSubscription(g, m, r); err != nil {
		resp.ErrorCode = kerr.InvalidRequest.Code
		msg := err.Error()
		resp.ErrorMessage = &msg
		out.reply(id, resp)
		return out
	}
	cs.members[memberID] = m
	if r.InstanceID != nil {
		cs.statics[*r.InstanceID] = memberID
	}
	cs.epoch++
	c.rebalances.consumer++
	m.deadline = now.Add(c.cfg.ConsumerSessionTimeout)
	c.reconcile(g, m, nil, now)
	c.fillHeartbeat(g, m, resp, true)
	out.reply(id, resp)
	return out
}

// updateSubscription takes a heartbeat's subscription (nil fields mean
// "unchanged") and bumps the group epoch when it changed.
func (c *Coordinator) updateSubscription(g *Group, m *consumerMember, r *kmsg.ConsumerGroupHeartbeatRequest) error {
	cs := g.consumer
	changed := false
	if r.SubscribedTopicNames != nil {
		names := append([]string(nil), r.SubscribedTopicNames...)
		sort.Strings(names)
		if !equalStrings(names, m.subscribed) {
			m.subscribed, changed = names, true
		}
	}
	if r.SubscribedTopicRegex != nil {
		src := *r.SubscribedTopicRegex
		if src == "" {
			if m.regex != nil {
				m.regex, m.regexSrc, changed = nil, nil, true
			}
		} else if m.regexSrc == nil || *m.regexSrc != src {
			re, err := regexp.Compile(src)
			if err != nil {
				return fmt.Errorf("subscribed topic regex %q: %w", src, err)
			}
			m.regex, m.regexSrc, changed = re, &src, true
		}
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != "" && *r.ServerAssignor != cs.assignor {
		cs.assignor, changed = *r.ServerAssignor, true
	}
	if changed && cs.members[m.id] == m {
		cs.epoch++
		c.rebalances.consumer++
		c.rebalances.consumer++
	}
	return nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// computeTarget recomputes the target assignment when the group epoch
// moved past it.
func (c *Coordinator) computeTarget(g *Group) {
	cs := g.consumer
	if cs.assignmentEpoch >= cs.epoch {
		return
	}
	in := assignInput{subscribed: map[string]map[[16]byte]bool{}, partitions: map[[16]byte]int32{}, previous: cs.target}
	for id, m := range cs.members {
		in.members = append(in.members, id)
		subs := map[[16]byte]bool{}
		for _, name := range m.topicNames(c.topics) {
			if tid, n, ok := c.topics.ByName(name); ok && n > 0 {
				subs[tid] = true
				in.partitions[tid] = n
			}
		}
		in.subscribed[id] = subs
	}
	sort.Strings(in.members)
	if cs.assignor == "range" {
		cs.target = rangeAssign(in)
	} else {
		cs.target = uniformAssign(in)
	}
	cs.assignmentEpoch = cs.epoch
}

// reconcile moves a member towards its target: first the partitions it
// must give up are revoked (its epoch stays until it confirms); then it
// gets the target's partitions no other member still holds, and the
// assignment epoch.
func (c *Coordinator) reconcile(g *Group, m *consumerMember, owned assignment, now time.Time) {
	cs := g.consumer
	c.computeTarget(g)
	target := cs.target[m.id]
	if owned != nil && len(m.revoking) > 0 {
		// The member reports what it still owns: what it dropped is free.
		for tp := range m.revoking {
			if _, still := owned[tp]; !still {
				delete(m.revoking, tp)
			}
		}
	}
	if len(m.revoking) == 0 {
		m.revokeDeadline = time.Time{}
	}
	// Give up what the target no longer holds.
	var revoke []tpid
	for tp := range m.assigned {
		if _, keep := target[tp]; !keep {
			revoke = append(revoke, tp)
		}
	}
	if len(revoke) > 0 {
		for _, tp := range revoke {
			delete(m.assigned, tp)
			m.revoking[tp] = struct{}{}
		}
		m.revokeDeadline = now.Add(m.rebalanceTimeout)
	}
	if len(m.revoking) > 0 {
		return // new partitions only after the revocation is confirmed
	}
	// Take what is free.
	held := map[tpid]string{}
	for id, o := range cs.members {
		if id == m.id {
			continue
		}
		for tp := range o.assigned {
			held[tp] = id
		}
		for tp := range o.revoking {
			held[tp] = id
		}
	}
	for tp := range target {
		if _, busy := held[tp]; !busy {
			m.assigned[tp] = struct{}{}
		}
	}
	if m.epoch != cs.assignmentEpoch {
		m.prevEpoch, m.epoch = m.epoch, cs.assignmentEpoch
	}
}

// fillHeartbeat answers with the member's epoch and, when it changed (or
// on join), its assignment.
func (c *Coordinator) fillHeartbeat(g *Group, m *consumerMember, resp *kmsg.ConsumerGroupHeartbeatResponse, join bool) {
	resp.ErrorCode = 0
	resp.MemberID = &m.id
	resp.MemberEpoch = m.epoch
	if !join && m.sent != nil && m.sent.equal(m.assigned) {
		return
	}
	m.sent = m.assigned.clone()
	a := &kmsg.ConsumerGroupHeartbeatResponseAssignment{}
	byTopic := map[[16]byte][]int32{}
	var order [][16]byte
	for _, tp := range m.assigned.sorted() {
		if _, ok := byTopic[tp.ID]; !ok {
			order = append(order, tp.ID)
		}
		byTopic[tp.ID] = append(byTopic[tp.ID], tp.Partition)
	}
	for _, id := range order {
		a.Topics = append(a.Topics, kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{TopicID: id, Partitions: byTopic[id]})
	}
	resp.Assignment = a
}

func ownedFrom(ts []kmsg.ConsumerGroupHeartbeatRequestTopic) assignment {
	if ts == nil {
		return nil
	}
	a := assignment{}
	for _, t := range ts {
		for _, p := range t.Partitions {
			a[tpid{t.TopicID, p}] = struct{}{}
		}
	}
	return a
}

func subset(a, b assignment) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func union(a, b assignment) assignment {
	u := a.clone()
	for k := range b {
		u[k] = struct{}{}
	}
	return u
}

// consumerRemove takes a member out; the others rebalance.
func (c *Coordinator) consumerRemove(g *Group, m *consumerMember, now time.Time) {
	cs := g.consumer
	delete(cs.members, m.id)
	delete(cs.target, m.id)
	if m.instanceID != nil && cs.statics[*m.instanceID] == m.id {
		delete(cs.statics, *m.instanceID)
	}
	cs.epoch++
	c.rebalances.consumer++
	if len(cs.members) == 0 {
		g.emptySince = now
	}
}

// tickConsumer expires members whose session ended and members that did
// not give up revoked partitions within their rebalance timeout.
func (c *Coordinator) tickConsumer(g *Group, now time.Time) Output {
	cs := g.consumer
	var ids []string
	for id := range cs.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		m := cs.members[id]
		if !now.Before(m.deadline) || (!m.revokeDeadline.IsZero() && !now.Before(m.revokeDeadline)) {
			c.consumerRemove(g, m, now)
		}
	}
	return Output{}
}

func (cs *consumerState) nextDeadline() time.Time {
	var next time.Time
	for _, m := range cs.members {
		for _, t := range []time.Time{m.deadline, m.revokeDeadline} {
			if !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}

// SetTopics tells the coordinator the topics changed (created, deleted,
// grown): consumer groups subscribed to them get a new target.
func (c *Coordinator) SetTopics(t Topics) {
	c.topics = t
	for _, g := range c.groups {
		if g.consumer != nil && len(g.consumer.members) > 0 {
			g.consumer.epoch++
			c.rebalances.consumer++
		}
	}
}

// consumerCommitCheck applies KIP-848 fencing to an offset commit: the
// generation field carries the member epoch.
func (c *Coordinator) consumerCommitCheck(g *Group, memberID string, epoch int32, now time.Time) *kerr.Error {
	cs := g.consumer
	if epoch < 0 && len(cs.members) == 0 {
		return nil
	}
	m, ok := cs.members[memberID]
	switch {
	case !ok:
		return kerr.UnknownMemberID
	case epoch > m.epoch:
		return kerr.FencedMemberEpoch
	case epoch < m.epoch && epoch != m.prevEpoch:
		return kerr.StaleMemberEpoch
	}
	return nil
}

func (c *Coordinator) consumerFetchCheck(g *Group, memberID string, epoch int32) *kerr.Error {
	if epoch < 0 {
		return nil
	}
	m, ok := g.consumer.members[memberID]
	switch {
	case !ok:
		return kerr.UnknownMemberID
	case epoch != m.epoch && epoch != m.prevEpoch:
		return kerr.StaleMemberEpoch
	}
	return nil
}

// ConsumerGroupDescribe describes KIP-848 groups.
func (c *Coordinator) ConsumerGroupDescribe(now time.Time, id RequestID, r *kmsg.ConsumerGroupDescribeRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, gid := range r.Groups {
		dg := kmsg.NewConsumerGroupDescribeResponseGroup()
		dg.Group = gid
		dg.AuthorizedOperations = -2147483648
		g, ok := c.groups[gid]
		switch {
		case !ok:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		case g.consumer == nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			msg := "group " + gid + " is a classic group"
			dg.ErrorMessage = &msg
		default:
			cs := g.consumer
			dg.State, dg.Epoch, dg.AssignmentEpoch, dg.AssignorName = cs.state(), cs.epoch, cs.assignmentEpoch, cs.assignor
			ids := make([]string, 0, len(cs.members))
			for mid := range cs.members {
				ids = append(ids, mid)
			}
			sort.Strings(ids)
			for _, mid := range ids {
				m := cs.members[mid]
				dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
				dm.MemberID, dm.InstanceID, dm.RackID, dm.MemberEpoch = m.id, m.instanceID, m.rackID, m.epoch
				dm.ClientID, dm.ClientHost, dm.SubscribedTopics, dm.SubscribedTopicRegex = m.clientID, m.clientHost, m.subscribed, m.regexSrc
				dm.Assignment = c.describeAssignment(m.assigned)
				dm.TargetAssignment = c.describeAssignment(cs.target[m.id])
				dg.Members = append(dg.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, dg)
	}
	out.reply(id, resp)
	return out
}

func (c *Coordinator) describeAssignment(a assignment) kmsg.Assignment {
	var out kmsg.Assignment
	idx := map[[16]byte]int{}
	for _, tp := range a.sorted() {
		i, ok := idx[tp.ID]
		if !ok {
			name, _, _ := c.topics.ByID(tp.ID)
			out.TopicPartitions = append(out.TopicPartitions, kmsg.AssignmentTopicPartition{TopicID: tp.ID, Topic: name})
			i = len(out.TopicPartitions) - 1
			idx[tp.ID] = i
		}
		out.TopicPartitions[i].Partitions = append(out.TopicPartitions[i].Partitions, tp.Partition)
	}
	return out
}
