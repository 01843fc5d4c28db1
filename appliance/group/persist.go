package group

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records in __consumer_offsets use Kafka's own encodings (kmsg's
// OffsetCommitKey/Value and GroupMetadataKey/Value), so Kafka tools can
// read them: key version 1 is an offset, key version 2 a group.

func offsetKey(group string, tp topicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: 1, Group: group, Topic: tp.Topic, Partition: tp.Partition}
	return k.AppendTo(nil)
}

func offsetRecord(group string, tp topicPartition, e offsetEntry) Record {
	v := kmsg.OffsetCommitValue{Version: 3, Offset: e.Offset, LeaderEpoch: e.LeaderEpoch, Metadata: e.Metadata, CommitTimestamp: e.Committed.UnixMilli()}
	return Record{Group: group, Key: offsetKey(group, tp), Value: v.AppendTo(nil)}
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: 2, Group: group}
	return k.AppendTo(nil)
}

// groupRecord persists a classic group's generation, leader, protocol and
// members with their assignments.
func (c *Coordinator) groupRecord(g *Group, now time.Time) Record {
	cs := g.classic
	v := kmsg.GroupMetadataValue{Version: 3, ProtocolType: cs.protocolType, Generation: cs.generation, CurrentStateTimestamp: now.UnixMilli()}
	if cs.protocol != "" {
		p, l := cs.protocol, cs.leader
		v.Protocol, v.Leader = &p, &l
	}
	for _, m := range cs.sortedMembers() {
		v.Members = append(v.Members, kmsg.GroupMetadataValueMember{
			MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost,
			RebalanceTimeoutMillis: int32(m.rebalanceTimeout / time.Millisecond), SessionTimeoutMillis: int32(m.sessionTimeout / time.Millisecond),
			Subscription: m.metadataFor(cs.protocol), Assignment: m.assignment,
		})
	}
	return Record{Group: g.ID, Key: groupKey(g.ID), Value: v.AppendTo(nil)}
}

// Load replays one record of __consumer_offsets (in log order). Records it
// does not know are skipped; damaged ones are errors naming what failed.
func (c *Coordinator) Load(key, value []byte, now time.Time) error {
	if len(key) < 2 {
		return fmt.Errorf("group record: key of %d bytes", len(key))
	}
	switch version := int16(binary.BigEndian.Uint16(key)); version {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("group record: offset key: %w", err)
		}
		tp := topicPartition{k.Topic, k.Partition}
		if value == nil {
			if g, ok := c.groups[k.Group]; ok {
				delete(g.offsets, tp)
			}
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("group record: offset of %s %s/%d: %w", k.Group, k.Topic, k.Partition, err)
		}
		g, ok := c.groups[k.Group]
		if !ok {
			g = &Group{ID: k.Group, Type: TypeClassic, offsets: map[topicPartition]offsetEntry{}, classic: newClassic(), emptySince: time.UnixMilli(v.CommitTimestamp)}
			c.groups[k.Group] = g
		}
		le := v.LeaderEpoch
		if v.Version < 3 {
			le = -1
		}
		g.offsets[tp] = offsetEntry{Offset: v.Offset, LeaderEpoch: le, Metadata: v.Metadata, Committed: time.UnixMilli(v.CommitTimestamp)}
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("group record: group key: %w", err)
		}
		if value == nil {
			delete(c.groups, k.Group)
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("group record: group %s: %w", k.Group, err)
		}
		g := c.getOrCreate(k.Group, TypeClassic, now)
		g.Type, g.consumer, g.classic = TypeClassic, nil, newClassic()
		cs := g.classic
		cs.generation, cs.protocolType = v.Generation, v.ProtocolType
		if v.Protocol != nil {
			cs.protocol = *v.Protocol
		}
		if v.Leader != nil {
			cs.leader = *v.Leader
		}
		for i, m := range v.Members {
			cm := &classicMember{
				id: m.MemberID, instanceID: m.InstanceID, clientID: m.ClientID, clientHost: m.ClientHost,
				protocolType: v.ProtocolType, protocols: []kmsg.JoinGroupRequestProtocol{{Name: cs.protocol, Metadata: m.Subscription}},
				sessionTimeout: time.Duration(m.SessionTimeoutMillis) * time.Millisecond, rebalanceTimeout: time.Duration(m.RebalanceTimeoutMillis) * time.Millisecond,
				assignment: m.Assignment, joinedSeq: uint64(i + 1),
			}
			cs.members[cm.id] = cm
			if cm.instanceID != nil {
				cs.statics[*cm.instanceID] = cm.id
			}
		}
		cs.joinSeq = uint64(len(v.Members))
		if len(cs.members) == 0 {
			cs.state = StateEmpty
			g.emptySince = time.UnixMilli(v.CurrentStateTimestamp)
		} else {
			cs.state = StateStable
		}
	default:
		// Transaction and other coordinator records are not ours.
	}
	return nil
}

// FinishLoad starts every restored member's session now: members of a
// group restored from the log get a full session to come back.
func (c *Coordinator) FinishLoad(now time.Time) {
	for _, g := range c.groups {
		if g.classic == nil {
			continue
		}
		for _, m := range g.classic.members {
			m.deadline = now.Add(m.sessionTimeout)
		}
	}
}
