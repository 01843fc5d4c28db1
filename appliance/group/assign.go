package group

import (
	"bytes"
	"sort"
)

// tpid is a partition of a topic, by topic id.
type tpid struct {
	ID        [16]byte
	Partition int32
}

func lessTP(a, b tpid) bool {
	if c := bytes.Compare(a.ID[:], b.ID[:]); c != 0 {
		return c < 0
	}
	return a.Partition < b.Partition
}

// assignment is a set of partitions.
type assignment map[tpid]struct{}

func (a assignment) clone() assignment {
	c := make(assignment, len(a))
	for k := range a {
		c[k] = struct{}{}
	}
	return c
}

func (a assignment) sorted() []tpid {
	out := make([]tpid, 0, len(a))
	for k := range a {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return lessTP(out[i], out[j]) })
	return out
}

func (a assignment) equal(b assignment) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// assignInput is what an assignor sees: members (sorted by id) with the
// topic ids they subscribe to, partition counts, and the previous target.
type assignInput struct {
	members    []string
	subscribed map[string]map[[16]byte]bool
	partitions map[[16]byte]int32
	previous   map[string]assignment
}

// uniformAssign spreads every subscribed partition evenly over the members
// that subscribe to its topic, keeping previous owners where the balance
// allows (sticky).
func uniformAssign(in assignInput) map[string]assignment {
	out := map[string]assignment{}
	for _, m := range in.members {
		out[m] = assignment{}
	}
	var all []tpid
	eligible := map[tpid][]string{}
	ids := sortedIDs(in.partitions)
	for _, id := range ids {
		for p := int32(0); p < in.partitions[id]; p++ {
			tp := tpid{id, p}
			for _, m := range in.members {
				if in.subscribed[m][id] {
					eligible[tp] = append(eligible[tp], m)
				}
			}
			if len(eligible[tp]) > 0 {
				all = append(all, tp)
			}
		}
	}
	if len(in.members) == 0 {
		return out
	}
	quota := (len(all) + len(in.members) - 1) / len(in.members)
	owner := map[tpid]string{}
	// Keep previous owners up to the quota.
	for _, m := range in.members {
		for _, tp := range in.previous[m].sorted() {
			if len(out[m]) >= quota || !in.subscribed[m][tp.ID] || tp.Partition >= in.partitions[tp.ID] {
				continue
			}
			if _, taken := owner[tp]; taken {
				continue
			}
			out[m][tp] = struct{}{}
			owner[tp] = m
		}
	}
	// Hand the rest to the least loaded eligible member.
	for _, tp := range all {
		if _, taken := owner[tp]; taken {
			continue
		}
		best := ""
		for _, m := range eligible[tp] {
			if best == "" || len(out[m]) < len(out[best]) {
				best = m
			}
		}
		out[best][tp] = struct{}{}
		owner[tp] = best
	}
	// Even out members of the same eligibility when one has two more.
	for moved := true; moved; {
		moved = false
		for _, tp := range all {
			from := owner[tp]
			for _, to := range eligible[tp] {
				if len(out[from])-len(out[to]) > 1 {
					delete(out[from], tp)
					out[to][tp] = struct{}{}
					owner[tp] = to
					moved = true
					break
				}
			}
		}
	}
	return out
}

// rangeAssign gives each member, per topic, a contiguous range of
// partitions (members in id order; the first ones take one extra).
func rangeAssign(in assignInput) map[string]assignment {
	out := map[string]assignment{}
	for _, m := range in.members {
		out[m] = assignment{}
	}
	for _, id := range sortedIDs(in.partitions) {
		var subs []string
		for _, m := range in.members {
			if in.subscribed[m][id] {
				subs = append(subs, m)
			}
		}
		if len(subs) == 0 {
			continue
		}
		n := in.partitions[id]
		per, extra := n/int32(len(subs)), n%int32(len(subs))
		p := int32(0)
		for i, m := range subs {
			k := per
			if int32(i) < extra {
				k++
			}
			for j := int32(0); j < k; j++ {
				out[m][tpid{id, p}] = struct{}{}
				p++
			}
		}
	}
	return out
}

func sortedIDs(m map[[16]byte]int32) [][16]byte {
	ids := make([][16]byte, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	return ids
}
