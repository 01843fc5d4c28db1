package group

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// classicState is a classic-protocol group: the JoinGroup/SyncGroup dance.
type classicState struct {
	state        string
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*classicMember
	pending      map[string]time.Time // member ids handed out with MEMBER_ID_REQUIRED, until they expire
	statics      map[string]string    // group.instance.id -> member id
	joinSeq      uint64

	rebalanceDeadline time.Time // PreparingRebalance: complete the join by then
	initialDelayUntil time.Time // PreparingRebalance from Empty: not before then
	syncDeadline      time.Time // CompletingRebalance: the leader must sync by then
}

type classicMember struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	deadline         time.Time // session expiry
	joinedSeq        uint64
	assignment       []byte

	join *pendingJoin
	sync *pendingSync
}

type pendingJoin struct {
	id   RequestID
	resp *kmsg.JoinGroupResponse
}

type pendingSync struct {
	id   RequestID
	resp *kmsg.SyncGroupResponse
}

func newClassic() *classicState {
	return &classicState{state: StateEmpty, members: map[string]*classicMember{}, pending: map[string]time.Time{}, statics: map[string]string{}}
}

// ClientInfo identifies the client behind a request.
type ClientInfo struct {
	ClientID   string
	ClientHost string
}

// newMemberID makes a member id the way Kafka does: the client id and a
// unique suffix.
func (c *Coordinator) newMemberID(clientID string, now time.Time) string {
	c.idSeq++
	return fmt.Sprintf("%s-%x-%x", clientID, now.UnixNano(), c.idSeq)
}

// JoinGroup handles a classic JoinGroup.
func (c *Coordinator) JoinGroup(now time.Time, id RequestID, ci ClientInfo, r *kmsg.JoinGroupRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.MemberID = r.MemberID
	fail := func(e *kerr.Error) Output {
		resp.ErrorCode = e.Code
		out.reply(id, resp)
		return out
	}
	session := time.Duration(r.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	if r.Version == 0 {
		rebalance = session
	}
	switch {
	case r.Group == "":
		return fail(kerr.InvalidGroupID)
	case session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout:
		return fail(kerr.InvalidSessionTimeout)
	case r.ProtocolType == "" || len(r.Protocols) == 0:
		return fail(kerr.InconsistentGroupProtocol)
	}
	for _, p := range r.Protocols {
		if len(p.Metadata) > c.cfg.MaxProtocolBytes {
			return fail(kerr.InvalidRequest)
		}
	}
	g := c.getOrCreate(r.Group, TypeClassic, now)
	if !g.convert(TypeClassic) {
		return fail(kerr.InconsistentGroupProtocol)
	}
	cs := g.classic
	if cs.state == StateDead {
		return fail(kerr.CoordinatorNotAvailable)
	}
	if !cs.supports(r.ProtocolType, r.Protocols) {
		return fail(kerr.InconsistentGroupProtocol)
	}
	newMember := func(memberID string) *classicMember {
		return &classicMember{
			id: memberID, instanceID: r.InstanceID, clientID: ci.ClientID, clientHost: ci.ClientHost,
			protocolType: r.ProtocolType, protocols: r.Protocols, sessionTimeout: session, rebalanceTimeout: rebalance,
		}
	}
	if r.MemberID == "" {
		if r.InstanceID != nil {
			if old, ok := cs.statics[*r.InstanceID]; ok {
				return c.rejoinStatic(g, now, id, resp, cs.members[old], newMember(c.newMemberID(ci.ClientID, now)))
			}
		}
		if c.cfg.MaxGroupSize > 0 && len(cs.members)+len(cs.pending) >= c.cfg.MaxGroupSize {
			return fail(kerr.GroupMaxSizeReached)
		}
		memberID := c.newMemberID(ci.ClientID, now)
		if r.InstanceID == nil && r.Version >= 4 {
			// KIP-394: the client must come back with this id.
			cs.pending[memberID] = now.Add(session)
			resp.MemberID = memberID
			return fail(kerr.MemberIDRequired)
		}
		resp.MemberID = memberID
		return c.addMember(g, now, id, resp, newMember(memberID))
	}
	m, ok := cs.members[r.MemberID]
	if !ok {
		if _, wasPending := cs.pending[r.MemberID]; wasPending {
			delete(cs.pending, r.MemberID)
			return c.addMember(g, now, id, resp, newMember(r.MemberID))
		}
		return fail(kerr.UnknownMemberID)
	}
	if cs.fenced(m, r.InstanceID) {
		return fail(kerr.FencedInstanceID)
	}
	return c.rejoin(g, now, id, resp, m, r.Protocols, session, rebalance)
}

// supports reports whether a member with these protocols can join.
func (cs *classicState) supports(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(cs.members) == 0 {
		return true
	}
	if protocolType != cs.protocolType && cs.protocolType != "" {
		return false
	}
	for _, name := range cs.candidates() {
		for _, p := range protocols {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// candidates returns the protocols every member supports, sorted.
func (cs *classicState) candidates() []string {
	count := map[string]int{}
	for _, m := range cs.members {
		seen := map[string]bool{}
		for _, p := range m.protocols {
			if !seen[p.Name] {
				seen[p.Name] = true
				count[p.Name]++
			}
		}
	}
	var out []string
	for name, n := range count {
		if n == len(cs.members) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (cs *classicState) fenced(m *classicMember, instanceID *string) bool {
	if instanceID == nil {
		return false
	}
	cur, ok := cs.statics[*instanceID]
	return ok && cur != m.id
}

func (c *Coordinator) addMember(g *Group, now time.Time, id RequestID, resp *kmsg.JoinGroupResponse, m *classicMember) Output {
	cs := g.classic
	cs.joinSeq++
	m.joinedSeq = cs.joinSeq
	m.join = &pendingJoin{id, resp}
	m.deadline = now.Add(m.sessionTimeout)
	cs.members[m.id] = m
	if m.instanceID != nil {
		cs.statics[*m.instanceID] = m.id
	}
	if cs.protocolType == "" {
		cs.protocolType = m.protocolType
	}
	var out Output
	if cs.state != StatePreparingRebalance {
		out.merge(c.prepareRebalance(g, now))
	}
	out.merge(c.maybeCompleteJoin(g, now))
	return out
}

// rejoin is a JoinGroup from a current member.
func (c *Coordinator) rejoin(g *Group, now time.Time, id RequestID, resp *kmsg.JoinGroupResponse, m *classicMember, protocols []kmsg.JoinGroupRequestProtocol, session, rebalance time.Duration) Output {
	cs := g.classic
	same := sameProtocols(m.protocols, protocols)
	m.protocols, m.sessionTimeout, m.rebalanceTimeout = protocols, session, rebalance
	m.deadline = now.Add(session)
	var out Output
	if m.join != nil {
		// A retry while the first join waits: the old one gets an error.
		old := m.join.resp
		old.ErrorCode = kerr.UnknownMemberID.Code
		out.reply(m.join.id, old)
	}
	switch cs.state {
	case StatePreparingRebalance:
		m.join = &pendingJoin{id, resp}
		out.merge(c.maybeCompleteJoin(g, now))
	case StateCompletingRebalance, StateStable:
		if same && (cs.state == StateCompletingRebalance || m.id != cs.leader) {
			m.join = nil
			c.fillJoin(g, m, resp, false)
			out.reply(id, resp)
			return out
		}
		m.join = &pendingJoin{id, resp}
		out.merge(c.prepareRebalance(g, now))
		out.merge(c.maybeCompleteJoin(g, now))
	default:
		resp.ErrorCode = kerr.UnknownMemberID.Code
		out.reply(id, resp)
	}
	return out
}

// rejoinStatic replaces a static member that restarted: it takes over the
// old member's place under a new member id. When the group is stable and
// its protocols did not change, there is no rebalance (KIP-345).
func (c *Coordinator) rejoinStatic(g *Group, now time.Time, id RequestID, resp *kmsg.JoinGroupResponse, old, m *classicMember) Output {
	cs := g.classic
	var out Output
	if old.join != nil {
		old.join.resp.ErrorCode = kerr.FencedInstanceID.Code
		out.reply(old.join.id, old.join.resp)
	}
	if old.sync != nil {
		old.sync.resp.ErrorCode = kerr.FencedInstanceID.Code
		out.reply(old.sync.id, old.sync.resp)
	}
	delete(cs.members, old.id)
	m.joinedSeq, m.assignment = old.joinedSeq, old.assignment
	m.deadline = now.Add(m.sessionTimeout)
	cs.members[m.id] = m
	cs.statics[*m.instanceID] = m.id
	if cs.leader == old.id {
		cs.leader = m.id
	}
	resp.MemberID = m.id
	if cs.state == StateStable && sameProtocols(old.protocols, m.protocols) {
		c.fillJoin(g, m, resp, true)
		out.reply(id, resp)
		out.Records = append(out.Records, c.groupRecord(g, now))
		return out
	}
	m.join = &pendingJoin{id, resp}
	if cs.state != StatePreparingRebalance {
		out.merge(c.prepareRebalance(g, now))
	}
	out.merge(c.maybeCompleteJoin(g, now))
	return out
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Metadata, b[i].Metadata) {
			return false
		}
	}
	return true
}

// prepareRebalance moves the group to PreparingRebalance.
func (c *Coordinator) prepareRebalance(g *Group, now time.Time) Output {
	cs := g.classic
	var out Output
	if cs.state == StateCompletingRebalance {
		// Assignments of the abandoned generation are void.
		for _, m := range cs.members {
			m.assignment = nil
			if m.sync != nil {
				m.sync.resp.ErrorCode = kerr.RebalanceInProgress.Code
				out.reply(m.sync.id, m.sync.resp)
				m.sync = nil
			}
		}
	}
	if cs.state == StateEmpty {
		cs.initialDelayUntil = now.Add(c.cfg.InitialRebalanceDelay)
	} else {
		cs.initialDelayUntil = time.Time{}
	}
	cs.state = StatePreparingRebalance
	var maxRebalance time.Duration
	for _, m := range cs.members {
		maxRebalance = max(maxRebalance, m.rebalanceTimeout)
	}
	cs.rebalanceDeadline = now.Add(maxRebalance)
	return out
}

// maybeCompleteJoin completes the join phase once every member rejoined
// (and no handed-out member id is still outstanding).
func (c *Coordinator) maybeCompleteJoin(g *Group, now time.Time) Output {
	cs := g.classic
	if cs.state != StatePreparingRebalance || len(cs.pending) > 0 || now.Before(cs.initialDelayUntil) {
		return Output{}
	}
	for _, m := range cs.members {
		if m.join == nil {
			return Output{}
		}
	}
	return c.completeJoin(g, now)
}

// completeJoin ends the join phase: members that did not rejoin are out,
// the generation moves, a protocol and a leader are chosen, and every
// waiting JoinGroup is answered (the leader with the member list).
func (c *Coordinator) completeJoin(g *Group, now time.Time) Output {
	cs := g.classic
	var out Output
	for _, m := range cs.members {
		if m.join == nil {
			out.merge(c.removeMember(g, m))
		}
	}
	cs.generation++
	if len(cs.members) > 0 {
		c.rebalances.classic++
	}
	if len(cs.members) == 0 {
		cs.state, cs.protocol, cs.leader, cs.protocolType = StateEmpty, "", "", ""
		g.emptySince = now
		out.Records = append(out.Records, c.groupRecord(g, now))
		return out
	}
	cs.protocol = cs.selectProtocol()
	if _, ok := cs.members[cs.leader]; !ok {
		cs.leader = ""
		for _, m := range cs.sortedMembers() {
			cs.leader = m.id
			break
		}
	}
	cs.state = StateCompletingRebalance
	var maxRebalance time.Duration
	for _, m := range cs.sortedMembers() {
		maxRebalance = max(maxRebalance, m.rebalanceTimeout)
		j := m.join
		m.join = nil
		m.assignment = nil
		m.deadline = now.Add(m.sessionTimeout)
		c.fillJoin(g, m, j.resp, false)
		out.reply(j.id, j.resp)
	}
	cs.syncDeadline = now.Add(maxRebalance)
	return out
}

// fillJoin writes the current generation into a JoinGroup response; the
// leader also gets the members and their metadata.
func (c *Coordinator) fillJoin(g *Group, m *classicMember, resp *kmsg.JoinGroupResponse, skipAssignment bool) {
	cs := g.classic
	resp.ErrorCode = 0
	resp.Generation = cs.generation
	resp.ProtocolType = &cs.protocolType
	proto := cs.protocol
	resp.Protocol = &proto
	resp.LeaderID = cs.leader
	resp.MemberID = m.id
	resp.Members = nil
	if m.id != cs.leader {
		return
	}
	resp.SkipAssignment = skipAssignment && resp.Version >= 9
	for _, o := range cs.sortedMembers() {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID, jm.InstanceID = o.id, o.instanceID
		jm.ProtocolMetadata = o.metadataFor(cs.protocol)
		resp.Members = append(resp.Members, jm)
	}
}

func (m *classicMember) metadataFor(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// sortedMembers returns members in the order they joined.
func (cs *classicState) sortedMembers() []*classicMember {
	out := make([]*classicMember, 0, len(cs.members))
	for _, m := range cs.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].joinedSeq != out[j].joinedSeq {
			return out[i].joinedSeq < out[j].joinedSeq
		}
		return out[i].id < out[j].id
	})
	return out
}

// selectProtocol picks the protocol most members prefer among those all
// support: each member votes for its first supported candidate.
func (cs *classicState) selectProtocol() string {
	cands := cs.candidates()
	votes := map[string]int{}
	for _, m := range cs.members {
		for _, p := range m.protocols {
			if contains(cands, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, name := range cands {
		if best == "" || votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// removeMember drops a member, answering its parked requests.
func (c *Coordinator) removeMember(g *Group, m *classicMember) Output {
	cs := g.classic
	var out Output
	if m.join != nil {
		m.join.resp.ErrorCode = kerr.UnknownMemberID.Code
		out.reply(m.join.id, m.join.resp)
	}
	if m.sync != nil {
		m.sync.resp.ErrorCode = kerr.UnknownMemberID.Code
		out.reply(m.sync.id, m.sync.resp)
	}
	delete(cs.members, m.id)
	if m.instanceID != nil && cs.statics[*m.instanceID] == m.id {
		delete(cs.statics, *m.instanceID)
	}
	return out
}

// membersLeft reacts to members going away: an empty group becomes Empty,
// otherwise the rest rebalance.
func (c *Coordinator) membersLeft(g *Group, now time.Time) Output {
	cs := g.classic
	var out Output
	if len(cs.members) == 0 {
		cs.generation++
		cs.state, cs.protocol, cs.leader, cs.protocolType = StateEmpty, "", "", ""
		g.emptySince = now
		out.Records = append(out.Records, c.groupRecord(g, now))
		return out
	}
	if cs.state != StatePreparingRebalance {
		out.merge(c.prepareRebalance(g, now))
	}
	out.merge(c.maybeCompleteJoin(g, now))
	return out
}

// SyncGroup handles a classic SyncGroup.
func (c *Coordinator) SyncGroup(now time.Time, id RequestID, r *kmsg.SyncGroupRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
	fail := func(e *kerr.Error) Output {
		resp.ErrorCode = e.Code
		out.reply(id, resp)
		return out
	}
	g, ok := c.groups[r.Group]
	if !ok || g.classic == nil {
		return fail(kerr.UnknownMemberID)
	}
	cs := g.classic
	m, ok := cs.members[r.MemberID]
	switch {
	case !ok:
		return fail(kerr.UnknownMemberID)
	case cs.fenced(m, r.InstanceID):
		return fail(kerr.FencedInstanceID)
	case r.Generation != cs.generation:
		return fail(kerr.IllegalGeneration)
	case r.ProtocolType != nil && *r.ProtocolType != cs.protocolType, r.Protocol != nil && *r.Protocol != cs.protocol:
		return fail(kerr.InconsistentGroupProtocol)
	}
	for _, a := range r.GroupAssignment {
		if len(a.MemberAssignment) > c.cfg.MaxProtocolBytes {
			return fail(kerr.InvalidRequest)
		}
	}
	m.deadline = now.Add(m.sessionTimeout)
	switch cs.state {
	case StatePreparingRebalance:
		return fail(kerr.RebalanceInProgress)
	case StateStable:
		c.fillSync(g, m, resp)
		out.reply(id, resp)
		return out
	case StateCompletingRebalance:
		if m.sync != nil {
			m.sync.resp.ErrorCode = kerr.RebalanceInProgress.Code
			out.reply(m.sync.id, m.sync.resp)
		}
		m.sync = &pendingSync{id, resp}
		if m.id != cs.leader {
			return out
		}
		for _, o := range cs.members {
			o.assignment = []byte{}
		}
		for _, a := range r.GroupAssignment {
			if o, ok := cs.members[a.MemberID]; ok {
				o.assignment = a.MemberAssignment
			}
		}
		cs.state = StateStable
		cs.syncDeadline = time.Time{}
		out.Records = append(out.Records, c.groupRecord(g, now))
		for _, o := range cs.sortedMembers() {
			if o.sync != nil {
				c.fillSync(g, o, o.sync.resp)
				out.reply(o.sync.id, o.sync.resp)
				o.sync = nil
			}
		}
		return out
	}
	return fail(kerr.UnknownMemberID)
}

func (c *Coordinator) fillSync(g *Group, m *classicMember, resp *kmsg.SyncGroupResponse) {
	cs := g.classic
	resp.ErrorCode = 0
	pt, p := cs.protocolType, cs.protocol
	resp.ProtocolType, resp.Protocol = &pt, &p
	resp.MemberAssignment = m.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
}

// Heartbeat handles a classic Heartbeat.
func (c *Coordinator) Heartbeat(now time.Time, id RequestID, r *kmsg.HeartbeatRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
	code := func() *kerr.Error {
		g, ok := c.groups[r.Group]
		if !ok || g.classic == nil {
			return kerr.UnknownMemberID
		}
		cs := g.classic
		m, ok := cs.members[r.MemberID]
		switch {
		case !ok:
			return kerr.UnknownMemberID
		case cs.fenced(m, r.InstanceID):
			return kerr.FencedInstanceID
		case r.Generation != cs.generation:
			return kerr.IllegalGeneration
		}
		m.deadline = now.Add(m.sessionTimeout)
		if cs.state == StatePreparingRebalance {
			return kerr.RebalanceInProgress
		}
		return nil
	}()
	if code != nil {
		resp.ErrorCode = code.Code
	}
	out.reply(id, resp)
	return out
}

// LeaveGroup handles a classic LeaveGroup (v3+: several members, static
// ones by instance id).
func (c *Coordinator) LeaveGroup(now time.Time, id RequestID, r *kmsg.LeaveGroupRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := r.Members
	if r.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: r.MemberID}}
	}
	g, ok := c.groups[r.Group]
	if !ok || g.classic == nil {
		if r.Version < 3 {
			resp.ErrorCode = kerr.UnknownMemberID.Code
		} else {
			for _, l := range leaving {
				resp.Members = append(resp.Members, kmsg.LeaveGroupResponseMember{MemberID: l.MemberID, InstanceID: l.InstanceID, ErrorCode: kerr.UnknownMemberID.Code})
			}
		}
		out.reply(id, resp)
		return out
	}
	cs := g.classic
	removed := 0
	for _, l := range leaving {
		rm := kmsg.LeaveGroupResponseMember{MemberID: l.MemberID, InstanceID: l.InstanceID}
		memberID := l.MemberID
		if memberID == "" && l.InstanceID != nil {
			memberID = cs.statics[*l.InstanceID]
		}
		m, ok := cs.members[memberID]
		switch {
		case !ok:
			rm.ErrorCode = kerr.UnknownMemberID.Code
		case cs.fenced(m, l.InstanceID):
			rm.ErrorCode = kerr.FencedInstanceID.Code
		default:
			out.merge(c.removeMember(g, m))
			removed++
		}
		if r.Version < 3 {
			resp.ErrorCode = rm.ErrorCode
		} else {
			resp.Members = append(resp.Members, rm)
		}
	}
	if removed > 0 {
		out.merge(c.membersLeft(g, now))
	}
	out.reply(id, resp)
	return out
}

// tickClassic fires a classic group's timeouts.
func (c *Coordinator) tickClassic(g *Group, now time.Time) Output {
	cs := g.classic
	var out Output
	for id, until := range cs.pending {
		if !now.Before(until) {
			delete(cs.pending, id)
		}
	}
	expired := 0
	for _, m := range cs.sortedMembers() {
		if m.join == nil && m.sync == nil && !now.Before(m.deadline) {
			out.merge(c.removeMember(g, m))
			expired++
		}
	}
	switch {
	case cs.state == StatePreparingRebalance && !now.Before(cs.rebalanceDeadline):
		out.merge(c.completeJoin(g, now))
	case cs.state == StateCompletingRebalance && !cs.syncDeadline.IsZero() && !now.Before(cs.syncDeadline):
		// The leader never synced: everyone who did not sync is out.
		for _, m := range cs.sortedMembers() {
			if m.sync == nil {
				out.merge(c.removeMember(g, m))
			}
		}
		out.merge(c.membersLeft(g, now))
		expired = 0
	}
	if expired > 0 {
		out.merge(c.membersLeft(g, now))
	} else {
		out.merge(c.maybeCompleteJoin(g, now))
	}
	return out
}

func (cs *classicState) nextDeadline() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, t := range cs.pending {
		consider(t)
	}
	for _, m := range cs.members {
		if m.join == nil && m.sync == nil {
			consider(m.deadline)
		}
	}
	switch cs.state {
	case StatePreparingRebalance:
		consider(cs.rebalanceDeadline)
		consider(cs.initialDelayUntil)
	case StateCompletingRebalance:
		consider(cs.syncDeadline)
	}
	return next
}
