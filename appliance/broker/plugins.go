package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eddybroker/eddy/appliance/metadata"
	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host"
)

// PluginsTopic is the internal, compacted topic of registered plugins:
// "module:sha256:<hex>" keys hold module bytes, "name:<name>" keys the
// digest a name points to. Clients read it to run partitioner plugins
// themselves.
const PluginsTopic = "__eddy_plugins"

// Record key prefixes of PluginsTopic.
const (
	pluginModuleKey = "module:"
	pluginNameKey   = "name:"
)

// Errors of the plugin registry.
var (
	// ErrPluginsDisabled is returned by plugin operations of a broker
	// without a plugin host.
	ErrPluginsDisabled = errors.New("plugins are not enabled on this broker (plugins.enabled)")
	// ErrNoSuchPlugin: no module or name matches.
	ErrNoSuchPlugin = errors.New("no such plugin")
	// ErrPluginInUse: a topic binds the module.
	ErrPluginInUse = errors.New("plugin in use")
)

// pluginRegistry is what PluginsTopic holds, in memory: which names point
// to which modules (the modules themselves are registered with the host).
type pluginRegistry struct {
	mu      sync.Mutex
	names   map[string]host.Digest
	modules map[host.Digest]time.Time // registration time
}

// PluginInfo describes a registered module for the admin API.
type PluginInfo struct {
	Digest     string         `json:"digest"`
	Names      []string       `json:"names"`
	Size       int            `json:"size_bytes"`
	Kinds      string         `json:"kinds"`
	ABIVersion string         `json:"abi_version"`
	Registered time.Time      `json:"registered"`
	State      string         `json:"state"`
	Topics     []string       `json:"topics,omitempty"` // topics binding it
	Counters   host.Counters  `json:"counters"`
	LastError  string         `json:"last_error,omitempty"`
	Pools      []PluginPool   `json:"pools,omitempty"`
	Logs       []host.LogLine `json:"logs,omitempty"`
}

// PluginPool is one use of a module (a configuration) in PluginInfo.
type PluginPool struct {
	ConfigDigest string        `json:"config_digest"`
	Trusted      bool          `json:"trusted"`
	State        string        `json:"state"`
	OpenUntil    time.Time     `json:"open_until,omitzero"`
	LastError    string        `json:"last_error,omitempty"`
	Counters     host.Counters `json:"counters"`
}

// startPlugins creates PluginsTopic if needed, registers every module it
// holds with the host and binds the plugins of every topic. A topic whose
// binding fails (a module gone) keeps serving; its plugin stages fail
// with the reason.
func (b *Broker) startPlugins() error {
	b.plugins.names = map[string]host.Digest{}
	b.plugins.modules = map[host.Digest]time.Time{}
	if b.cfg.Plugins == nil {
		return nil
	}
	if _, ok := b.topic(PluginsTopic); !ok {
		mt := metadata.Topic{
			Name: PluginsTopic, ID: metadata.NewTopicID(), Partitions: 1, ReplicationFactor: 1, Internal: true,
			Configs: map[string]string{"cleanup.policy": "compact", "max.message.bytes": fmt.Sprint(abi.MaxModuleBytes + 1<<20), "segment.bytes": fmt.Sprint(64 << 20)},
		}
		if err := b.meta.CreateTopic(mt); err != nil {
			return fmt.Errorf("create %s: %w", PluginsTopic, err)
		}
		t, err := b.openTopic(mt)
		if err != nil {
			return err
		}
		b.putTopic(t)
	}
	t, _ := b.topic(PluginsTopic)
	modules := map[host.Digest][]byte{}
	names := map[string]host.Digest{}
	_, err := replay(t.parts[0], func(key, value []byte) error {
		k := string(key)
		switch {
		case strings.HasPrefix(k, pluginModuleKey):
			d, err := host.ParseDigest(k[len(pluginModuleKey):])
			if err != nil {
				return nil // not ours
			}
			if value == nil {
				delete(modules, d)
			} else {
				modules[d] = value
			}
		case strings.HasPrefix(k, pluginNameKey):
			name := k[len(pluginNameKey):]
			if value == nil {
				delete(names, name)
			} else if d, err := host.ParseDigest(string(value)); err == nil {
				names[name] = d
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load plugins from %s: %w", PluginsTopic, err)
	}
	ctx := context.Background()
	for d, wasm := range modules {
		m, err := b.cfg.Plugins.Register(ctx, wasm)
		if err != nil {
			b.log.Error("a stored plugin no longer registers; topics binding it fail their plugin stage", "digest", d.String(), "err", err)
			continue
		}
		b.plugins.modules[d] = m.Registered
	}
	for name, d := range names {
		if _, ok := b.plugins.modules[d]; ok {
			b.plugins.names[name] = d
		}
	}
	// Bind every topic's plugins now that the modules are known.
	b.mu.RLock()
	var ts []*topic
	for _, t := range b.mu.topics {
		if t.cfg.plugins.any() {
			ts = append(ts, t)
		}
	}
	b.mu.RUnlock()
	for _, t := range ts {
		bp, err := b.bindPlugins(t.meta.Name, t.cfg)
		if err != nil {
			b.log.Error("binding a topic's plugins failed; its plugin stages fail until the configs are fixed", "topic", t.meta.Name, "err", err)
			bp = &boundPlugins{err: err}
		}
		nt := *t
		nt.plugins = bp
		b.putTopic(&nt)
	}
	return nil
}

// AddPlugin validates, compiles and stores a module under name (which then
// points to it, replacing what it pointed to). Registering the same bytes
// again only moves the name.
func (b *Broker) AddPlugin(ctx context.Context, name string, wasm []byte) (PluginInfo, error) {
	if b.cfg.Plugins == nil {
		return PluginInfo{}, ErrPluginsDisabled
	}
	if err := validPluginName(name); err != nil {
		return PluginInfo{}, err
	}
	m, err := b.cfg.Plugins.Register(ctx, wasm)
	if err != nil {
		return PluginInfo{}, fmt.Errorf("register plugin %s: %w", name, err)
	}
	d := m.Digest
	recs := []record.Simple{{Key: []byte(pluginModuleKey + d.String()), Value: wasm}, {Key: []byte(pluginNameKey + name), Value: []byte(d.String())}}
	if err := b.appendPlugins(recs); err != nil {
		return PluginInfo{}, fmt.Errorf("store plugin %s: %w", name, err)
	}
	b.plugins.mu.Lock()
	b.plugins.names[name] = d
	if _, ok := b.plugins.modules[d]; !ok {
		b.plugins.modules[d] = m.Registered
	}
	b.plugins.mu.Unlock()
	b.log.Info("registered plugin", "name", name, "digest", d.String(), "kinds", m.Kinds.String(), "bytes", len(wasm))
	return b.Plugin(d.String())
}

// appendPlugins appends records to PluginsTopic and waits until durable.
func (b *Broker) appendPlugins(recs []record.Simple) error {
	t, ok := b.topic(PluginsTopic)
	if !ok {
		return fmt.Errorf("%s is gone", PluginsTopic)
	}
	batch, err := record.Build(record.BatchOptions{BaseTimestamp: b.cfg.Now().UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
	if err != nil {
		return err
	}
	out := t.parts[0].append(batch, nil)
	if out.err != nil {
		return out.err
	}
	return out.wait()
}

// resolvePlugin finds a module by digest or name.
func (b *Broker) resolvePlugin(ref string) (host.Digest, error) {
	b.plugins.mu.Lock()
	defer b.plugins.mu.Unlock()
	if d, ok := b.plugins.names[ref]; ok {
		return d, nil
	}
	if r, err := parsePluginRef(ref); err == nil {
		if _, ok := b.plugins.modules[r.digest]; ok {
			return r.digest, nil
		}
	}
	return host.Digest{}, fmt.Errorf("%w: %q is not registered (eddy plugin list shows them)", ErrNoSuchPlugin, ref)
}

// Plugins lists the registered modules.
func (b *Broker) Plugins() []PluginInfo {
	if b.cfg.Plugins == nil {
		return []PluginInfo{}
	}
	b.plugins.mu.Lock()
	ds := make([]host.Digest, 0, len(b.plugins.modules))
	for d := range b.plugins.modules {
		ds = append(ds, d)
	}
	b.plugins.mu.Unlock()
	out := []PluginInfo{}
	for _, d := range ds {
		if info, err := b.pluginInfo(d, false); err == nil {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// Plugin describes one module, by digest or name, with its pools and
// recent log lines.
func (b *Broker) Plugin(ref string) (PluginInfo, error) {
	if b.cfg.Plugins == nil {
		return PluginInfo{}, ErrPluginsDisabled
	}
	d, err := b.resolvePlugin(ref)
	if err != nil {
		return PluginInfo{}, err
	}
	return b.pluginInfo(d, true)
}

func (b *Broker) pluginInfo(d host.Digest, detail bool) (PluginInfo, error) {
	st, err := b.cfg.Plugins.Status(d)
	if err != nil {
		return PluginInfo{}, err
	}
	info := PluginInfo{
		Digest: d.String(), Size: st.Module.Size, Kinds: st.Module.Kinds.String(), ABIVersion: st.Module.ABIVersion.String(),
		Registered: st.Module.Registered, State: string(st.State), Counters: st.Counters, LastError: st.LastError,
		Names: []string{}, Topics: b.topicsBinding(d),
	}
	b.plugins.mu.Lock()
	for name, nd := range b.plugins.names {
		if nd == d {
			info.Names = append(info.Names, name)
		}
	}
	b.plugins.mu.Unlock()
	sort.Strings(info.Names)
	if detail {
		for _, p := range st.Pools {
			info.Pools = append(info.Pools, PluginPool{ConfigDigest: p.ConfigDigest, Trusted: p.Trusted, State: string(p.State),
				OpenUntil: p.OpenUntil, LastError: p.LastError, Counters: p.Counters})
		}
		info.Logs, _ = b.cfg.Plugins.Logs(d)
	}
	return info, nil
}

// topicsBinding lists the topics whose configs name module d.
func (b *Broker) topicsBinding(d host.Digest) []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []string
	for name, t := range b.mu.topics {
		tp := t.cfg.plugins
		for _, st := range []stageBinding{tp.partitioner, tp.produce, tp.cleanup} {
			if slices.ContainsFunc(st.refs, func(r pluginRef) bool { return r.digest == d }) {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// RemovePlugin removes a name (its module goes too when nothing else
// names it) or, given a digest, the module and every name pointing to it.
// A module a topic binds is not removed: unbind it first.
func (b *Broker) RemovePlugin(ctx context.Context, ref string) error {
	if b.cfg.Plugins == nil {
		return ErrPluginsDisabled
	}
	b.adminMu.Lock() // no topic binds the module while it goes
	defer b.adminMu.Unlock()
	d, err := b.resolvePlugin(ref)
	if err != nil {
		return err
	}
	b.plugins.mu.Lock()
	var drop []string
	others := 0
	for name, nd := range b.plugins.names {
		switch {
		case nd != d:
		case name == ref || ref == d.String() || strings.HasSuffix(ref, "@"+d.String()):
			drop = append(drop, name)
		default:
			others++
		}
	}
	b.plugins.mu.Unlock()
	removeModule := others == 0
	if removeModule {
		if ts := b.topicsBinding(d); len(ts) > 0 {
			return fmt.Errorf("%w: plugin %s is bound by topic(s) %s: unbind it first (eddy topic alter)", ErrPluginInUse, d, strings.Join(ts, ", "))
		}
	}
	var recs []record.Simple
	for _, name := range drop {
		recs = append(recs, record.Simple{Key: []byte(pluginNameKey + name)})
	}
	if removeModule {
		recs = append(recs, record.Simple{Key: []byte(pluginModuleKey + d.String())})
	}
	if len(recs) > 0 {
		if err := b.appendPlugins(recs); err != nil {
			return fmt.Errorf("remove plugin %s: %w", ref, err)
		}
	}
	b.plugins.mu.Lock()
	for _, name := range drop {
		delete(b.plugins.names, name)
	}
	if removeModule {
		delete(b.plugins.modules, d)
	}
	b.plugins.mu.Unlock()
	if removeModule {
		if err := b.cfg.Plugins.Remove(ctx, d); err != nil {
			return fmt.Errorf("remove plugin %s: %w", d, err)
		}
	}
	b.log.Info("removed plugin", "ref", ref, "digest", d.String(), "module_removed", removeModule)
	return nil
}

// boundPlugins are a topic's plugin stages, bound to the host: each a
// pool per (module, configuration), made when the configs were set.
type boundPlugins struct {
	produce     []*host.Transformer
	partitioner *host.Partitioner
	cleanup     *host.Cleanup
	err         error // binding failed at start-up: every stage fails with it
}

// bindTimeout bounds binding one plugin (instantiation and eddy_init).
const bindTimeout = 10 * time.Second

// bindPlugins binds a topic's configured plugins, so a module that is not
// registered or refuses its configuration fails the config change.
func (b *Broker) bindPlugins(topic string, tc topicConfig) (*boundPlugins, error) {
	tp := tc.plugins
	if !tp.any() {
		return nil, nil
	}
	h := b.cfg.Plugins
	if h == nil {
		return nil, ErrPluginsDisabled
	}
	ctx, cancel := context.WithTimeout(context.Background(), bindTimeout)
	defer cancel()
	opts := func(st stageBinding, stage abi.Stage) host.CallOptions {
		return host.CallOptions{Topic: topic, Stage: stage, Timeout: st.timeout, MemoryLimitBytes: st.memory, Trusted: st.trusted, MaxRecordBytes: tc.maxMessageBytes}
	}
	known := func(key string, r pluginRef) error {
		b.plugins.mu.Lock()
		_, ok := b.plugins.modules[r.digest]
		b.plugins.mu.Unlock()
		if !ok {
			return fmt.Errorf("%s: %s is not registered (eddy plugin add)", key, r)
		}
		return nil
	}
	bp := &boundPlugins{}
	for _, r := range tp.produce.refs {
		if err := known("plugin.produce.transforms", r); err != nil {
			return nil, err
		}
		tr, err := h.Transformer(ctx, r.digest, tp.produce.config, opts(tp.produce, abi.StageProduce))
		if err != nil {
			return nil, fmt.Errorf("plugin.produce.transforms: %s: %w", r, err)
		}
		bp.produce = append(bp.produce, tr)
	}
	if rs := tp.partitioner.refs; rs != nil {
		if err := known("plugin.partitioner", rs[0]); err != nil {
			return nil, err
		}
		pt, err := h.Partitioner(ctx, rs[0].digest, tp.partitioner.config, opts(tp.partitioner, abi.StagePartition))
		if err != nil {
			return nil, fmt.Errorf("plugin.partitioner: %s: %w", rs[0], err)
		}
		bp.partitioner = pt
	}
	if rs := tp.cleanup.refs; rs != nil {
		if err := known("plugin.cleanup", rs[0]); err != nil {
			return nil, err
		}
		cl, err := h.Cleanup(ctx, rs[0].digest, tp.cleanup.config, opts(tp.cleanup, abi.StageCleanup))
		if err != nil {
			return nil, fmt.Errorf("plugin.cleanup: %s: %w", rs[0], err)
		}
		bp.cleanup = cl
	}
	return bp, nil
}

// transformError is a produce-stage plugin failure, with the Kafka error
// code the producer gets.
type transformError struct {
	code int16
	err  error
}

// runProduceTransforms runs a topic's produce chain over a validated batch.
// It returns the batch to store: the input itself when nothing changed,
// a re-encoded batch, or nil when every record was dropped; and a release
// to call once the batch is appended, which recycles a re-encoded batch's
// buffer. Under on.error=bypass a failing chain stores the input
// unfiltered.
func (b *Broker) runProduceTransforms(t *topic, batch record.Batch) ([]byte, func(), *transformError) {
	bp := t.plugins
	policy := t.cfg.plugins.produce.onErrorOr("reject")
	// last is the transform result cur comes from, when one rebuilt it.
	var last host.Result
	fail := func(err error) ([]byte, func(), *transformError) {
		last.Release()
		if policy == "bypass" {
			b.log.Warn("produce transform failed; appending the batch unfiltered (plugin.produce.on.error=bypass)", "topic", t.meta.Name, "err", err)
			return batch, nil, nil
		}
		return nil, nil, &transformError{codeStorageError, fmt.Errorf("produce transform of topic %s failed, nothing appended (plugin.produce.on.error=reject; retry): %w", t.meta.Name, err)}
	}
	if bp.err != nil {
		return fail(bp.err)
	}
	cur := []byte(batch)
	for i, tr := range bp.produce {
		res, err := tr.Transform(context.Background(), cur)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", t.cfg.plugins.produce.refs[i], err))
		}
		if len(res.Rejected) > 0 {
			last.Release()
			msg := res.Message
			if msg == "" {
				msg = "rejected by the produce transform"
			}
			return nil, nil, &transformError{codeInvalidRecord, fmt.Errorf("%s: %d record(s) rejected, first at index %d: %s", t.cfg.plugins.produce.refs[i], len(res.Rejected), res.Rejected[0], msg)}
		}
		if res.Changed {
			// The previous output is now copied into this one.
			last.Release()
			last = res
		}
		if res.Out == nil {
			last.Release()
			return nil, nil, nil // every record dropped
		}
		cur = res.Out
	}
	return cur, last.Release, nil
}

// forIdempotence prepares a transformed batch of an idempotent producer
// for storage: its sequence numbers end where the producer's batch ended,
// so producer state rebuilt from the log after a restart expects the
// producer's next sequence. A batch whose records were all dropped is
// stored as an empty batch for the same reason.
func forIdempotence(orig record.Batch, stored []byte) ([]byte, error) {
	if stored == nil {
		out, err := record.BuildRaw(record.BatchOptions{
			LeaderEpoch: orig.LeaderEpoch(), Codec: record.CodecNone, Attributes: orig.Attributes() &^ record.AttrCodecMask,
			BaseTimestamp: orig.BaseTimestamp(), ProducerID: orig.ProducerID(), ProducerEpoch: orig.ProducerEpoch(), BaseSequence: orig.LastSequence(),
		}, nil, 0, 0, orig.MaxTimestamp())
		return out, err
	}
	// The host rebuilds a batch ending at its input's last sequence; any
	// other batch is renumbered to end there and its checksum updated.
	sb := record.Batch(stored)
	if seq := record.BaseSequenceEnding(orig.LastSequence(), sb.LastOffsetDelta()); sb.BaseSequence() != seq {
		sb.SetBaseSequence(seq)
		sb.UpdateCRC()
	}
	return stored, nil
}

// cleanupPolicy runs a topic's cleanup plugin for the log cleaner, on one
// partition.
type cleanupPolicy struct {
	c         *host.Cleanup
	err       error // the binding failed: every pass fails, deleting nothing
	partition int32
	dryRun    bool
}

// CleanupPolicy returns the cleanup policy of the partition whose log is
// l when its topic has cleanup.policy=plugin, and nil otherwise (key
// compaction).
func (b *Broker) CleanupPolicy(l *partlog.Log) partlog.Policy {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, t := range b.mu.topics {
		if t.cfg.cleanupPolicy != "plugin" {
			continue
		}
		for _, p := range t.parts {
			if p.log != l {
				continue
			}
			cp := cleanupPolicy{partition: p.tp.Partition, dryRun: t.cfg.plugins.dryRun}
			switch {
			case t.plugins == nil:
				cp.err = fmt.Errorf("topic %s: cleanup plugin not bound", t.meta.Name)
			case t.plugins.err != nil:
				cp.err = t.plugins.err
			default:
				cp.c = t.plugins.cleanup
			}
			return cp
		}
	}
	return nil
}

// DryRun says the cleaner must only report what the policy would do.
func (p cleanupPolicy) DryRun() bool { return p.dryRun }

// Segment implements partlog.Policy.
func (p cleanupPolicy) Segment(m partlog.SegmentMeta) (partlog.SegmentDecision, error) {
	if p.err != nil {
		return 0, p.err
	}
	var flags uint32
	if m.HasTombstones {
		flags |= abi.SegmentHasTombstones
	}
	d, err := p.c.Segment(context.Background(), abi.SegmentMeta{
		BaseOffset: m.Base, LastOffset: m.Last, MinTimestamp: m.MinTimestamp, MaxTimestamp: m.MaxTimestamp,
		SizeBytes: m.Size, RecordCount: uint32(m.Records), Flags: flags, NowMs: m.NowMs,
		PartitionSizeBytes: m.PartitionSize, LogStartOffset: m.LogStart, RetentionMs: m.RetentionMs,
		RetentionBytes: m.RetentionBytes, FederatedUpto: m.FederatedUpto,
	})
	if err != nil {
		return 0, err
	}
	switch d {
	case abi.SegmentKeep:
		return partlog.SegmentKeep, nil
	case abi.SegmentDelete:
		return partlog.SegmentDelete, nil
	case abi.SegmentRewrite:
		return partlog.SegmentRewrite, nil
	}
	return partlog.SegmentDefault, nil
}

// Records implements partlog.Policy.
func (p cleanupPolicy) Records(b record.Batch, latest []bool) ([]partlog.RecordDecision, error) {
	if p.err != nil {
		return nil, p.err
	}
	ds, err := p.c.Records(context.Background(), b, p.partition, latest)
	if err != nil {
		return nil, err
	}
	out := make([]partlog.RecordDecision, len(ds))
	for i, d := range ds {
		switch d {
		case abi.CleanupKeep:
			out[i] = partlog.RecordKeep
		case abi.CleanupDrop:
			out[i] = partlog.RecordDrop
		default:
			out[i] = partlog.RecordDefault
		}
	}
	return out, nil
}
