package broker

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/eddybroker/eddy/appliance/group"
	"github.com/eddybroker/eddy/appliance/metadata"
	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetsTopic is the internal, compacted topic that keeps committed
// offsets and group metadata.
const OffsetsTopic = "__consumer_offsets"

// groupCoordinator drives the pure group core: one goroutine owns it,
// feeds it requests and the clock, appends the records it produces to
// __consumer_offsets, and answers requests once those records are durable.
type groupCoordinator struct {
	b     *Broker
	core  *group.Coordinator
	calls chan groupCall
	kick  chan struct{} // topics changed
	stop  chan struct{}
	done  chan struct{}
}

type groupCall struct {
	fn    func(now time.Time, id group.RequestID) group.Output
	reply chan kmsg.Response
}

// topicsView shows the broker's topics to the group core.
type topicsView struct{ b *Broker }

func (v topicsView) ByName(name string) ([16]byte, int32, bool) {
	t, ok := v.b.topic(name)
	if !ok {
		return [16]byte{}, 0, false
	}
	return t.meta.ID, int32(len(t.parts)), true
}

func (v topicsView) ByID(id [16]byte) (string, int32, bool) {
	t, ok := v.b.topicByID(id)
	if !ok {
		return "", 0, false
	}
	return t.meta.Name, int32(len(t.parts)), true
}

func (v topicsView) Names() []string {
	v.b.mu.RLock()
	defer v.b.mu.RUnlock()
	names := make([]string, 0, len(v.b.mu.topics))
	for name, t := range v.b.mu.topics {
		if !t.meta.Internal {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// startGroups creates __consumer_offsets if needed, replays it into the
// group core and starts the coordinator's goroutine.
func (b *Broker) startGroups() error {
	if _, ok := b.topic(OffsetsTopic); !ok {
		mt := metadata.Topic{
			Name: OffsetsTopic, ID: metadata.NewTopicID(), Partitions: b.cfg.OffsetsPartitions, ReplicationFactor: 1, Internal: true,
			Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": strconv.FormatInt(b.cfg.OffsetsSegmentBytes, 10)},
		}
		if err := b.meta.CreateTopic(mt); err != nil {
			return fmt.Errorf("create %s: %w", OffsetsTopic, err)
		}
		t, err := b.openTopic(mt)
		if err != nil {
			return err
		}
		b.putTopic(t)
	}
	gc := &groupCoordinator{
		b: b, core: group.New(b.cfg.Groups, topicsView{b}),
		calls: make(chan groupCall), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	t, _ := b.topic(OffsetsTopic)
	now := b.cfg.Now()
	loaded := 0
	for _, p := range t.parts {
		n, err := replay(p, func(key, value []byte) error { return gc.core.Load(key, value, now) })
		if err != nil {
			return fmt.Errorf("load groups from %s: %w", p.tp, err)
		}
		loaded += n
	}
	gc.core.FinishLoad(now)
	if loaded > 0 {
		b.log.Info("group state loaded", "records", loaded, "groups", len(gc.core.GroupIDs()))
	}
	b.groups = gc
	go gc.run()
	return nil
}

// replay calls fn with every record of a partition, in order.
func replay(p *partition, fn func(key, value []byte) error) (int, error) {
	n := 0
	off := p.log.Offsets()
	for next := off.LogStart; next < off.LEO; {
		res, err := p.log.Read(next, 4<<20, true)
		if err != nil {
			return n, err
		}
		if len(res.Data) == 0 {
			break
		}
		for buf := res.Data; len(buf) > 0; {
			bt, err := record.Check(buf)
			if err != nil {
				return n, err
			}
			buf = buf[len(bt):]
			next = bt.LastOffset() + 1
			if bt.IsControl() {
				continue
			}
			err = bt.EachRecord(0, func(r *record.Record) error {
				n++
				return fn(r.Key, r.Value)
			})
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (gc *groupCoordinator) run() {
	defer close(gc.done)
	pending := map[group.RequestID]chan kmsg.Response{}
	var nextID group.RequestID
	var seenClassic, seenConsumer uint64 // rebalances reported to the observer
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Stop()
		if d := gc.core.NextDeadline(); !d.IsZero() {
			timer.Reset(max(d.Sub(gc.b.cfg.Now()), time.Millisecond))
		}
		var out group.Output
		select {
		case <-gc.stop:
			for _, ch := range pending {
				close(ch)
			}
			return
		case c := <-gc.calls:
			nextID++
			pending[nextID] = c.reply
			out = c.fn(gc.b.cfg.Now(), nextID)
		case <-timer.C:
			out = gc.core.Tick(gc.b.cfg.Now())
		case <-gc.kick:
			gc.core.SetTopics(topicsView{gc.b})
		}
		if o := gc.b.cfg.Observer; o != nil {
			classic, consumer := gc.core.Rebalances()
			for ; seenClassic < classic; seenClassic++ {
				o.GroupRebalance("classic")
			}
			for ; seenConsumer < consumer; seenConsumer++ {
				o.GroupRebalance("consumer")
			}
		}
		type delivery struct {
			ch   chan kmsg.Response
			resp kmsg.Response
		}
		var ds []delivery
		for _, r := range out.Replies {
			if ch, ok := pending[r.To]; ok {
				delete(pending, r.To)
				ds = append(ds, delivery{ch, r.Resp})
			}
		}
		if len(out.Records) == 0 {
			for _, d := range ds {
				d.ch <- d.resp
			}
			continue
		}
		wait := gc.persist(out.Records)
		go func() {
			if err := wait(); err != nil {
				gc.b.log.Error("persisting group state failed", "err", err)
				for _, d := range ds {
					failGroupResponse(d.resp)
				}
			}
			for _, d := range ds {
				d.ch <- d.resp
			}
		}()
	}
}

// persist appends records to their __consumer_offsets partitions (one
// batch per partition) and returns a wait for their durability.
func (gc *groupCoordinator) persist(recs []group.Record) func() error {
	t, ok := gc.b.topic(OffsetsTopic)
	if !ok {
		return func() error { return fmt.Errorf("%s is gone", OffsetsTopic) }
	}
	byPart := map[int32][]record.Simple{}
	for _, r := range recs {
		p := groupPartition(r.Group, int32(len(t.parts)))
		byPart[p] = append(byPart[p], record.Simple{Key: r.Key, Value: r.Value})
	}
	var waits []func() error
	var errs []error
	now := gc.b.cfg.Now().UnixMilli()
	for p, rs := range byPart {
		batch, err := record.Build(record.BatchOptions{BaseTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, rs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		outc := t.parts[p].append(batch, nil)
		if outc.err != nil {
			errs = append(errs, outc.err)
			continue
		}
		waits = append(waits, outc.wait)
	}
	return func() error {
		for _, w := range waits {
			if err := w(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errs[0]
		}
		return nil
	}
}

// groupPartition is Kafka's choice of __consumer_offsets partition for a
// group: abs(java hashCode of the group id) mod the partition count.
func groupPartition(group string, n int32) int32 {
	var h int32
	for _, r := range utf16(group) {
		h = 31*h + int32(r)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % n
}

func utf16(s string) []uint16 {
	var out []uint16
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			out = append(out, uint16(0xd800+(r>>10)), uint16(0xdc00+(r&0x3ff)))
		} else {
			out = append(out, uint16(r))
		}
	}
	return out
}

// failGroupResponse turns a response whose state could not be persisted
// into a retriable error.
func failGroupResponse(resp kmsg.Response) {
	code := kerr.CoordinatorNotAvailable.Code
	switch r := resp.(type) {
	case *kmsg.OffsetCommitResponse:
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				r.Topics[i].Partitions[j].ErrorCode = code
			}
		}
	case *kmsg.SyncGroupResponse:
		r.ErrorCode = code
	case *kmsg.JoinGroupResponse:
		r.ErrorCode = code
	case *kmsg.LeaveGroupResponse:
		r.ErrorCode = code
	case *kmsg.HeartbeatResponse:
		r.ErrorCode = code
	case *kmsg.DeleteGroupsResponse:
		for i := range r.Groups {
			r.Groups[i].ErrorCode = code
		}
	case *kmsg.OffsetDeleteResponse:
		r.ErrorCode = code
	}
}

// call runs fn in the coordinator's goroutine and returns a result that
// delivers its reply when it comes (a JoinGroup may wait for a whole
// rebalance).
func (gc *groupCoordinator) call(req *kafkawire.Request, fn func(now time.Time, id group.RequestID) group.Output) kafkawire.Result {
	reply := make(chan kmsg.Response, 1)
	select {
	case gc.calls <- groupCall{fn: fn, reply: reply}:
	case <-gc.done:
		return kafkawire.Result{Response: notAvailable(req)}
	}
	return kafkawire.Result{Later: func() kmsg.Response {
		resp, ok := <-reply
		if !ok || resp == nil {
			return notAvailable(req)
		}
		return resp
	}}
}

// notAvailable answers a group request while the coordinator is stopping.
func notAvailable(req *kafkawire.Request) kmsg.Response {
	resp := req.Body.ResponseKind()
	failGroupResponse(resp)
	if r, ok := resp.(*kmsg.ConsumerGroupHeartbeatResponse); ok {
		r.ErrorCode = kerr.CoordinatorNotAvailable.Code
	}
	return resp
}

// topicsChanged wakes the coordinator to refresh consumer-group targets.
func (gc *groupCoordinator) topicsChanged() {
	if gc == nil {
		return
	}
	select {
	case gc.kick <- struct{}{}:
	default:
	}
}

func (gc *groupCoordinator) close() {
	if gc == nil {
		return
	}
	var once sync.Once
	once.Do(func() { close(gc.stop) })
	<-gc.done
}
