package group

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups describes classic groups (a consumer group is described
// as "not found" here; ConsumerGroupDescribe covers it).
func (c *Coordinator) DescribeGroups(now time.Time, id RequestID, r *kmsg.DescribeGroupsRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, gid := range r.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = gid
		dg.AuthorizedOperations = -2147483648
		g, ok := c.groups[gid]
		switch {
		case !ok:
			dg.State = StateDead
			if r.Version >= 6 {
				dg.ErrorCode = kerr.GroupIDNotFound.Code
			}
		case g.consumer != nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			msg := "group " + gid + " uses the consumer protocol; use ConsumerGroupDescribe"
			dg.ErrorMessage = &msg
		default:
			cs := g.classic
			dg.State, dg.ProtocolType = cs.state, cs.protocolType
			if cs.state == StateStable || cs.state == StateCompletingRebalance {
				dg.Protocol = cs.protocol
			}
			for _, m := range cs.sortedMembers() {
				dm := kmsg.NewDescribeGroupsResponseGroupMember()
				dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
				if cs.state == StateStable {
					dm.ProtocolMetadata = m.metadataFor(cs.protocol)
					dm.MemberAssignment = m.assignment
				}
				dg.Members = append(dg.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, dg)
	}
	out.reply(id, resp)
	return out
}

// ListGroups lists groups, filtered by state (v4+) and type (v5+).
func (c *Coordinator) ListGroups(now time.Time, id RequestID, r *kmsg.ListGroupsRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	for _, gid := range c.GroupIDs() {
		g := c.groups[gid]
		state := g.State()
		if len(r.StatesFilter) > 0 && !containsFold(r.StatesFilter, state) {
			continue
		}
		if len(r.TypesFilter) > 0 && !containsFold(r.TypesFilter, g.Type) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.GroupState, lg.GroupType = gid, state, g.Type
		if g.classic != nil {
			lg.ProtocolType = g.classic.protocolType
		} else {
			lg.ProtocolType = "consumer"
		}
		resp.Groups = append(resp.Groups, lg)
	}
	out.reply(id, resp)
	return out
}

func containsFold(xs []string, x string) bool {
	for _, y := range xs {
		if equalFold(y, x) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// DeleteGroups deletes empty groups and their offsets.
func (c *Coordinator) DeleteGroups(now time.Time, id RequestID, r *kmsg.DeleteGroupsRequest) Output {
	var out Output
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, gid := range r.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = gid
		g, ok := c.groups[gid]
		switch {
		case !ok:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		case !g.isEmpty():
			dg.ErrorCode = kerr.NonEmptyGroup.Code
		default:
			out.Records = append(out.Records, c.deleteGroup(g)...)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	out.reply(id, resp)
	return out
}

// deleteGroup forgets a group and returns the tombstones that delete it
// from __consumer_offsets.
func (c *Coordinator) deleteGroup(g *Group) []Record {
	var recs []Record
	tps := make([]topicPartition, 0, len(g.offsets))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
	for _, tp := range tps {
		recs = append(recs, Record{Group: g.ID, Key: offsetKey(g.ID, tp)})
	}
	recs = append(recs, Record{Group: g.ID, Key: groupKey(g.ID)})
	delete(c.groups, g.ID)
	return recs
}

func sortStrings(s []string) { sort.Strings(s) }

func sortInt32(s []int32) []int32 {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}
