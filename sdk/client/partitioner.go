package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
)

// RegistryTopic is the internal, compacted topic of registered plugin
// modules: key "module:sha256:<hex>" holds a module's bytes (null when
// removed), key "name:<name>" holds the digest a name points to.
const RegistryTopic = "__eddy_plugins"

// Topic configs that bind a partitioner plugin.
const (
	ConfigPartitioner        = "plugin.partitioner"                  // name@sha256:<hex> or sha256:<hex>
	ConfigPartitionerConfig  = "plugin.partitioner.config"           // bytes for eddy_init
	ConfigPartitionerOnError = "plugin.partitioner.on.error"         // reject (default) or fallback
	ConfigPartitionerTimeout = "plugin.partitioner.timeout.ms"       // deadline per call (50)
	ConfigPartitionerTrusted = "plugin.partitioner.trusted"          // run without termination checks
	ConfigPartitionerMemory  = "plugin.partitioner.memory.max.bytes" // memory cap per instance
)

// DefaultPartitionTimeout is the deadline of a partitioner call when the
// topic does not set plugin.partitioner.timeout.ms.
const DefaultPartitionTimeout = 50 * time.Millisecond

// Errors of records the Partitioner could not place; RecordError returns
// them wrapped with the topic, the plugin and the cause.
var (
	// ErrRecordRejected: the plugin answered PartitionReject.
	ErrRecordRejected = errors.New("client: the partitioner plugin rejected the record")
	// ErrPartitionerFailed: the plugin call failed (trap, deadline,
	// error status, invalid output, open circuit) and the topic's
	// plugin.partitioner.on.error is reject.
	ErrPartitionerFailed = errors.New("client: partitioner plugin failed")
	// ErrBindingUnavailable: the topic's binding or its module could not
	// be loaded, so the client does not know where the record belongs.
	ErrBindingUnavailable = errors.New("client: partitioner binding unavailable")
)

// PartitionerConfig configures a Partitioner. Zero fields take the
// defaults given with each.
type PartitionerConfig struct {
	// Topics are loaded by New (with the PluginPartitioner option)
	// before it returns; New fails when one cannot be. Other topics are
	// loaded on their first record.
	Topics []string
	// RefreshInterval is how often the bindings of known topics are read
	// again (1 minute); negative turns periodic refresh off.
	RefreshInterval time.Duration
	// LoadTimeout bounds the loading of a binding: configs, module and
	// compilation (30 s).
	LoadTimeout time.Duration
	// RetryAfter is how long records of a topic whose binding failed to
	// load fail at once before the next attempt (5 s).
	RetryAfter time.Duration
	// CacheDir keeps modules read from the registry and their compiled
	// code across processes ("" keeps them in memory only). See
	// DefaultCacheDir.
	CacheDir string
	// Default places the records of topics without a partitioner plugin,
	// and the keyless records a plugin leaves to the default (kgo's
	// default, UniformBytesPartitioner(64 KiB, true, true, nil)).
	Default kgo.Partitioner
	// Logger hears of bindings, load failures and plugin log lines
	// (discarded when nil).
	Logger *slog.Logger
}

func (c *PartitionerConfig) setDefaults() {
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Minute
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = 30 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.Default == nil {
		c.Default = kgo.UniformBytesPartitioner(64<<10, true, true, nil)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// DefaultCacheDir returns <user cache dir>/eddy/plugins, or "" when the
// platform has no user cache directory.
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "eddy", "plugins")
}

// Binding describes what a topic binds, as the Partitioner last read it.
type Binding struct {
	Topic   string
	Plugin  string // the plugin.partitioner value; "" when no plugin is bound
	Name    string // the name part of Plugin, informative only
	Digest  string // sha256:<hex>, the module that runs
	Config  []byte // handed to eddy_init
	OnError string // "reject" or "fallback"
	Timeout time.Duration
	Trusted bool
	Memory  uint64 // instance memory cap; 0 means the sandbox default
	Loaded  time.Time
	// Err says why records of the topic cannot be placed; nil when the
	// binding works.
	Err error
}

// Partitioner is a kgo.Partitioner that runs the partitioner plugins
// topics bind, and places the records of other topics with
// PartitionerConfig.Default. Install it with the PluginPartitioner option
// of New, or with KgoOpts for kgo.NewClient. A Partitioner serves one
// client; it stops and releases its plugins when that client closes.
//
// What a plugin answers, per record: a partition 0..n-1; PartitionDefault,
// which places a keyed record by Kafka's murmur2 of its key and a keyless
// one by Default; or PartitionReject, which fails the record with
// ErrRecordRejected. When the call fails (trap, deadline, error status,
// invalid output, open circuit), on.error=reject fails the record with
// ErrPartitionerFailed and on.error=fallback places it as for
// PartitionDefault. The call gets the record's key, value, headers and
// timestamp, the topic and its partition count; one call per record, with
// the encoder and buffers reused.
//
// Loading. The binding of a topic is read on its first record, in kgo's
// HookProduceRecordBuffered, which runs in the goroutine that called
// Produce (or TryProduce) before kgo takes any lock: the first record of a
// topic waits for one DescribeConfigs and, when the topic binds a module
// the client does not have yet, for a read of the registry and a
// compilation (about a second for a Go guest, tens of milliseconds from
// the disk cache), at most LoadTimeout or until the record's context ends;
// later records do not wait. kgo's partitioner callback never does I/O: it
// may run on kgo's metadata goroutine, which must not block. A topic that
// does not exist yet binds nothing (auto-creation makes it without
// configs). After a failed load, the topic's records fail for RetryAfter,
// then the next record tries again. Modules are compiled once per digest
// and kept, with their instances, until the client closes; the digest is
// authoritative, the name in name@sha256:... only informative. Bindings
// are read again every RefreshInterval and on Refresh.
//
// Failing a record. kgo's only way for a partitioner to fail a record is
// an out-of-range choice: kgo finishes the record at once with its generic
// "invalid record partitioning choice" error, and nothing is buffered or
// sent. Before answering -1 the Partitioner stores the cause in the
// record's Context, and RecordError turns the error the promise receives
// into that cause.
type Partitioner struct {
	cfg    PartitionerConfig
	log    *slog.Logger
	topics sync.Map // topic name -> *topicState

	ctx    context.Context // ends when the client closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // the refresher and lazy loads

	registry sync.Mutex // one module load at a time

	// refreshed, when set (tests), is called after each periodic refresh.
	refreshed func()

	mu struct {
		sync.Mutex
		cl     *kgo.Client
		misuse error
		engine *sandbox.Engine
		closed bool
	}
}

var (
	_ kgo.Partitioner                = (*Partitioner)(nil)
	_ kgo.TopicBackupPartitioner     = (*topicPartitioner)(nil)
	_ kgo.TopicPartitionerOnNewBatch = batchTopicPartitioner{}
	_ kgo.HookNewClient              = hooks{}
	_ kgo.HookClientClosed           = hooks{}
	_ kgo.HookProduceRecordBuffered  = hooks{}
)

// NewPartitioner returns a Partitioner; nothing is loaded until it is
// attached to a client.
func NewPartitioner(cfg PartitionerConfig) *Partitioner {
	cfg.setDefaults()
	p := &Partitioner{cfg: cfg, log: cfg.Logger}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// PluginPartitioner makes New's client place records with p: the records
// of topics that bind a partitioner plugin by running it locally, the
// others with p's default. New loads p's configured Topics before it
// returns. p's kgo options go after KgoOpts, so they replace a
// kgo.RecordPartitioner given there; set PartitionerConfig.Default
// instead.
func PluginPartitioner(p *Partitioner) Option {
	return func(o *options) { o.partitioner = p }
}

// KgoOpts returns the kgo options that install p: kgo.RecordPartitioner
// and the hooks that attach it to the client, load bindings on a topic's
// first record and release the plugins when the client closes. With
// kgo.NewClient directly, call Refresh with the topics to load them up
// front.
func (p *Partitioner) KgoOpts() []kgo.Opt {
	return []kgo.Opt{kgo.RecordPartitioner(p), kgo.WithHooks(hooks{p})}
}

// preload loads the configured topics, for New.
func (p *Partitioner) preload() error {
	if len(p.cfg.Topics) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.LoadTimeout)
	defer cancel()
	return p.Refresh(ctx, p.cfg.Topics...)
}

// Refresh reads the bindings of topics again (every topic the Partitioner
// knows when none are named), loading and compiling modules it does not
// have yet, and switches each topic to its new binding. Records produced
// meanwhile use the previous one. A topic whose configs cannot be read
// keeps a working previous binding; a topic whose new binding cannot be
// loaded (module missing, configuration refused) fails its records with
// ErrBindingUnavailable until a later load succeeds. The error names every
// topic that failed.
func (p *Partitioner) Refresh(ctx context.Context, topics ...string) error {
	var sts []*topicState
	if len(topics) == 0 {
		p.topics.Range(func(_, v any) bool {
			sts = append(sts, v.(*topicState))
			return true
		})
	}
	for _, t := range topics {
		if t == "" {
			return errors.New("client: refresh partitioner binding: empty topic name")
		}
		sts = append(sts, p.state(t))
	}
	if len(sts) == 0 {
		return nil
	}
	return p.load(ctx, sts)
}

// Binding returns the binding of topic as last loaded; false when the
// topic has not been loaded.
func (p *Partitioner) Binding(topic string) (Binding, bool) {
	v, ok := p.topics.Load(topic)
	if !ok {
		return Binding{}, false
	}
	b := v.(*topicState).cur.Load()
	if b == nil {
		return Binding{}, false
	}
	info := b.info
	info.Config = bytes.Clone(info.Config)
	return info, true
}

// RecordError returns why the Partitioner failed r, wrapping the error
// kgo gave its promise, or err itself when the failure was not the
// Partitioner's. Use it in promises:
//
//	cl.Produce(ctx, r, func(r *kgo.Record, err error) {
//		err = client.RecordError(r, err)
//		if errors.Is(err, client.ErrRecordRejected) { ... }
//	})
func RecordError(r *kgo.Record, err error) error {
	if err == nil || r == nil || r.Context == nil {
		return err
	}
	f, ok := r.Context.Value(failureKey{}).(*failure)
	if !ok || f.stale.Load() {
		return err
	}
	return &placementError{cause: f.err, kgo: err}
}

// placementError is RecordError's result: the Partitioner's cause, then
// kgo's error.
type placementError struct {
	cause, kgo error
}

func (e *placementError) Error() string   { return e.cause.Error() }
func (e *placementError) Unwrap() []error { return []error{e.cause, e.kgo} }

// failure is the cause of a failed placement, kept in the record's
// Context. stale is set when the record is produced again.
type failure struct {
	err   error
	stale atomic.Bool
}

type failureKey struct{}

// topicState is what the Partitioner knows of one topic.
type topicState struct {
	topic string
	cur   atomic.Pointer[binding] // nil until the first load ends

	mu      sync.Mutex
	loading chan struct{} // closed when the running lazy load ends
}

// binding is a loaded binding: no plugin (pool == nil, err == nil), a
// plugin, or a failure (err != nil).
type binding struct {
	info     Binding
	pool     *sandbox.Pool
	fallback bool
	timeout  time.Duration
	err      error // wraps ErrBindingUnavailable
	at       time.Time
}

func (p *Partitioner) state(topic string) *topicState {
	if v, ok := p.topics.Load(topic); ok {
		return v.(*topicState)
	}
	v, _ := p.topics.LoadOrStore(topic, &topicState{topic: topic})
	return v.(*topicState)
}

// client returns the attached client.
func (p *Partitioner) client() (*kgo.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.mu.misuse != nil:
		return nil, p.mu.misuse
	case p.mu.closed:
		return nil, errors.New("client closed")
	case p.mu.cl == nil:
		return nil, errors.New("the partitioner is not attached to a client (install it with PluginPartitioner or KgoOpts)")
	}
	return p.mu.cl, nil
}

// engine returns the sandbox, creating it on first use.
func (p *Partitioner) engine() (*sandbox.Engine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, errors.New("client closed")
	}
	if p.mu.engine != nil {
		return p.mu.engine, nil
	}
	cfg := sandbox.Config{Logger: p.log, InitTimeout: 10 * time.Second}
	if p.cfg.CacheDir != "" {
		cfg.CacheDir = filepath.Join(p.cfg.CacheDir, "compiled")
	}
	e, err := sandbox.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("start plugin sandbox: %w", err)
	}
	p.mu.engine = e
	return e, nil
}

// lazyLoad starts loading st unless a load is running, and returns a
// channel closed when it ends.
func (p *Partitioner) lazyLoad(st *topicState) <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loading != nil {
		return st.loading
	}
	ch := make(chan struct{})
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		close(ch)
		return ch
	}
	p.wg.Add(1)
	p.mu.Unlock()
	st.loading = ch
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.LoadTimeout)
		_ = p.load(ctx, []*topicState{st}) // the outcome is in st.cur
		cancel()
		st.mu.Lock()
		st.loading = nil
		st.mu.Unlock()
		close(ch)
	}()
	return ch
}

// load reads the configs of sts in one request and binds each topic.
func (p *Partitioner) load(ctx context.Context, sts []*topicState) error {
	names := make([]string, len(sts))
	for i, st := range sts {
		names[i] = st.topic
	}
	var errs []error
	fail := func(st *topicState, readFailed bool, err error) {
		err = fmt.Errorf("%w: topic %s: %w", ErrBindingUnavailable, st.topic, err)
		errs = append(errs, err)
		prev := st.cur.Load()
		if readFailed && prev != nil && prev.err == nil {
			// A transient failure to read must not stop a working binding.
			p.log.Warn("keep the partitioner binding: cannot read it again", "topic", st.topic, "err", err)
			return
		}
		now := time.Now()
		st.cur.Store(&binding{info: Binding{Topic: st.topic, Loaded: now, Err: err}, err: err, at: now})
		p.log.Warn("partitioner binding unavailable: records of the topic fail", "topic", st.topic, "err", err)
	}
	cl, err := p.client()
	if err != nil {
		for _, st := range sts {
			fail(st, true, err)
		}
		return errors.Join(errs...)
	}
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, names...)
	if err != nil && len(rcs) == 0 {
		for _, st := range sts {
			fail(st, true, fmt.Errorf("describe configs: %w", err))
		}
		return errors.Join(errs...)
	}
	byName := make(map[string]kadm.ResourceConfig, len(rcs))
	for _, rc := range rcs {
		byName[rc.Name] = rc
	}
	for _, st := range sts {
		rc, ok := byName[st.topic]
		switch {
		case !ok && err != nil:
			fail(st, true, fmt.Errorf("describe configs: %w", err))
			continue
		case !ok:
			fail(st, true, errors.New("describe configs: no answer for the topic"))
			continue
		case errors.Is(rc.Err, kerr.UnknownTopicOrPartition):
			// Not created yet (auto-creation makes it without configs):
			// no plugin.
			rc = kadm.ResourceConfig{Name: st.topic}
		case rc.Err != nil:
			fail(st, true, fmt.Errorf("describe configs: %w", rc.Err))
			continue
		}
		info, err := parseBinding(rc)
		if err != nil {
			fail(st, false, err)
			continue
		}
		b, err := p.bind(ctx, info)
		if err != nil {
			fail(st, false, err)
			continue
		}
		switch prev := st.cur.Load(); {
		case b.pool != nil && (prev == nil || prev.pool != b.pool):
			p.log.Info("partitioner plugin bound", "topic", st.topic, "plugin", b.info.Plugin)
		case b.pool == nil && prev != nil && prev.pool != nil:
			p.log.Info("partitioner plugin unbound", "topic", st.topic)
		}
		st.cur.Store(b)
	}
	return errors.Join(errs...)
}

// parseBinding reads the partitioner configs of a topic.
func parseBinding(rc kadm.ResourceConfig) (Binding, error) {
	b := Binding{Topic: rc.Name, OnError: "reject", Timeout: DefaultPartitionTimeout, Loaded: time.Now()}
	cfg := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			cfg[c.Key] = *c.Value
		}
	}
	b.Plugin = strings.TrimSpace(cfg[ConfigPartitioner])
	if b.Plugin == "" {
		return b, nil
	}
	// As the broker reads it: the digest decides, the name is a label.
	digest := b.Plugin
	if name, rest, ok := strings.Cut(b.Plugin, "@"); ok {
		if name == "" {
			return b, fmt.Errorf("%s %q: empty name before @", ConfigPartitioner, b.Plugin)
		}
		b.Name, digest = name, rest
	}
	d, err := sandbox.ParseDigest(digest)
	if err != nil {
		return b, fmt.Errorf("%s %q: want name@sha256:<64 hex digits> or sha256:<hex>", ConfigPartitioner, b.Plugin)
	}
	b.Digest = d.String()
	b.Config = []byte(cfg[ConfigPartitionerConfig])
	switch v := strings.TrimSpace(cfg[ConfigPartitionerOnError]); v {
	case "", "reject":
	case "fallback":
		b.OnError = v
	default:
		return b, fmt.Errorf("%s %q: want reject or fallback", ConfigPartitionerOnError, v)
	}
	if v := strings.TrimSpace(cfg[ConfigPartitionerTimeout]); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 || ms > int64(time.Hour/time.Millisecond) {
			return b, fmt.Errorf("%s %q: want milliseconds, 1 to 3600000", ConfigPartitionerTimeout, v)
		}
		b.Timeout = time.Duration(ms) * time.Millisecond
	}
	if v := strings.TrimSpace(cfg[ConfigPartitionerTrusted]); v != "" {
		t, err := strconv.ParseBool(v)
		if err != nil {
			return b, fmt.Errorf("%s %q: want true or false", ConfigPartitionerTrusted, v)
		}
		b.Trusted = t
	}
	if v := strings.TrimSpace(cfg[ConfigPartitionerMemory]); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return b, fmt.Errorf("%s %q: want a positive number of bytes", ConfigPartitionerMemory, v)
		}
		b.Memory = n
	}
	return b, nil
}

// bind loads the module of info (compiling it once per digest) and
// returns the binding with its instance pool.
func (p *Partitioner) bind(ctx context.Context, info Binding) (*binding, error) {
	b := &binding{info: info, at: time.Now(), timeout: info.Timeout, fallback: info.OnError == "fallback"}
	if info.Plugin == "" {
		return b, nil
	}
	d, err := sandbox.ParseDigest(info.Digest)
	if err != nil {
		return nil, err
	}
	e, err := p.engine()
	if err != nil {
		return nil, err
	}
	if err := p.loadModule(ctx, e, d); err != nil {
		return nil, fmt.Errorf("partitioner %s: %w", info.Plugin, err)
	}
	pool, err := e.Pool(ctx, d, abi.KindPartitioner, info.Config, sandbox.PoolOptions{Trusted: info.Trusted, MemoryLimitBytes: info.Memory})
	if err != nil {
		return nil, fmt.Errorf("partitioner %s: %w", info.Plugin, err)
	}
	b.pool = pool
	return b, nil
}

// loadModule registers module d with e unless it is there: from the disk
// cache, else from the registry topic (and then into the disk cache).
func (p *Partitioner) loadModule(ctx context.Context, e *sandbox.Engine, d sandbox.Digest) error {
	if _, ok := e.Module(d); ok {
		return nil
	}
	p.registry.Lock()
	defer p.registry.Unlock()
	if _, ok := e.Module(d); ok {
		return nil
	}
	wasm := p.readCached(d)
	if wasm == nil {
		cl, err := p.client()
		if err != nil {
			return err
		}
		if wasm, err = readRegistry(ctx, cl, "module:"+d.String()); err != nil {
			return err
		}
		if wasm == nil {
			return fmt.Errorf("module %s is not in the plugin registry (%s)", d, RegistryTopic)
		}
		if got := sandbox.DigestOf(wasm); got != d {
			return fmt.Errorf("registry record module:%s holds a module with digest %s", d, got)
		}
		p.writeCached(d, wasm)
	}
	if _, err := e.Register(ctx, wasm); err != nil {
		return fmt.Errorf("load module %s: %w", d, err)
	}
	return nil
}

func (p *Partitioner) cachePath(d sandbox.Digest) string {
	return filepath.Join(p.cfg.CacheDir, "modules", strings.TrimPrefix(d.String(), "sha256:")+".wasm")
}

// readCached returns module d from the disk cache, nil when it is not
// there or does not match its digest.
func (p *Partitioner) readCached(d sandbox.Digest) []byte {
	if p.cfg.CacheDir == "" {
		return nil
	}
	b, err := os.ReadFile(p.cachePath(d))
	if err != nil || sha256.Sum256(b) != d {
		return nil
	}
	return b
}

// writeCached stores module d in the disk cache (temporary file, then
// rename); a failure only costs a registry read next time.
func (p *Partitioner) writeCached(d sandbox.Digest, wasm []byte) {
	if p.cfg.CacheDir == "" {
		return
	}
	path := p.cachePath(d)
	err := func() error {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Dir(path), ".module-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := f.Write(wasm); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Rename(f.Name(), path)
	}()
	if err != nil {
		p.log.Warn("cannot cache plugin module", "path", path, "err", err)
	}
}

// Fetch sizes for reading the registry: a module is at most 16 MiB.
const (
	registryFetchBytes     = 64 << 20
	registryPartitionBytes = 32 << 20
)

// readRegistry reads the registry topic from its start to its high
// watermark and returns the value of the last record with key (nil when
// there is none or it is null).
func readRegistry(ctx context.Context, cl *kgo.Client, key string) ([]byte, error) {
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctx, RegistryTopic)
	if err != nil {
		return nil, fmt.Errorf("read plugin registry %s: metadata: %w", RegistryTopic, err)
	}
	td, ok := md.Topics[RegistryTopic]
	switch {
	case !ok:
		return nil, fmt.Errorf("read plugin registry %s: not in the metadata", RegistryTopic)
	case td.Err != nil:
		return nil, fmt.Errorf("read plugin registry %s: %w", RegistryTopic, td.Err)
	}
	pd, ok := td.Partitions[0]
	switch {
	case !ok:
		return nil, fmt.Errorf("read plugin registry %s: no partition 0", RegistryTopic)
	case pd.Err != nil:
		return nil, fmt.Errorf("read plugin registry %s: partition 0: %w", RegistryTopic, pd.Err)
	}
	start, err := listed(adm.ListStartOffsets(ctx, RegistryTopic))
	if err != nil {
		return nil, fmt.Errorf("read plugin registry %s: start offset: %w", RegistryTopic, err)
	}
	end, err := listed(adm.ListEndOffsets(ctx, RegistryTopic))
	if err != nil {
		return nil, fmt.Errorf("read plugin registry %s: end offset: %w", RegistryTopic, err)
	}
	var value []byte
	for off := start; off < end; {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = registryFetchBytes
		t := kmsg.NewFetchRequestTopic()
		t.Topic, t.TopicID = RegistryTopic, td.ID
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, off, registryPartitionBytes
		t.Partitions = append(t.Partitions, fp)
		req.Topics = append(req.Topics, t)
		kr, err := cl.Broker(int(pd.Leader)).RetriableRequest(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("read plugin registry %s at offset %d: %w", RegistryTopic, off, err)
		}
		resp := kr.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return nil, fmt.Errorf("read plugin registry %s at offset %d: %w", RegistryTopic, off, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return nil, fmt.Errorf("read plugin registry %s at offset %d: the response holds %d topics", RegistryTopic, off, len(resp.Topics))
		}
		// next is the offset to ask for next (past control records and
		// aborted batches too).
		got, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: off, Topic: RegistryTopic}, &resp.Topics[0].Partitions[0], kgo.DefaultDecompressor(), nil)
		if got.Err != nil {
			return nil, fmt.Errorf("read plugin registry %s at offset %d: %w", RegistryTopic, off, got.Err)
		}
		for _, r := range got.Records {
			if string(r.Key) == key {
				value = bytes.Clone(r.Value) // not the whole response
			}
			next = max(next, r.Offset+1)
		}
		if next <= off {
			return nil, fmt.Errorf("read plugin registry %s: no progress at offset %d of %d", RegistryTopic, off, end)
		}
		off = next
	}
	if len(value) == 0 {
		return nil, nil
	}
	return value, nil
}

// listed returns the offset of partition 0 of the registry.
func listed(l kadm.ListedOffsets, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	o, ok := l.Lookup(RegistryTopic, 0)
	if !ok {
		return 0, errors.New("no answer for partition 0")
	}
	if o.Err != nil {
		return 0, o.Err
	}
	return o.Offset, nil
}

// ForTopic implements kgo.Partitioner.
func (p *Partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	inner := p.cfg.Default.ForTopic(topic)
	tp := &topicPartitioner{p: p, topic: topic, topicBytes: []byte(topic), st: p.state(topic), inner: inner}
	tp.innerBackup, _ = inner.(kgo.TopicBackupPartitioner)
	if nb, ok := inner.(kgo.TopicPartitionerOnNewBatch); ok {
		return batchTopicPartitioner{tp, nb}
	}
	return tp
}

// topicPartitioner places the records of one topic. kgo calls it for one
// record at a time, so it needs no lock; it always implements
// TopicBackupPartitioner so that a default that needs the backlog (kgo's
// own) gets it.
type topicPartitioner struct {
	p           *Partitioner
	topic       string
	topicBytes  []byte
	st          *topicState
	inner       kgo.TopicPartitioner
	innerBackup kgo.TopicBackupPartitioner

	b *binding // the binding for the record being placed

	// The plugin's answer for the last record, reused when kgo places
	// the same record again after OnNewBatch.
	last       *kgo.Record
	lastAnswer int32
	lastErr    error

	enc abi.Encoder
	kvs []abi.KV
	out []int32
}

// batchTopicPartitioner adds OnNewBatch, for defaults that have it.
type batchTopicPartitioner struct {
	*topicPartitioner
	nb kgo.TopicPartitionerOnNewBatch
}

func (b batchTopicPartitioner) OnNewBatch() { b.nb.OnNewBatch() }

// RequiresConsistency is called first for each record: it takes the
// binding the record is placed with. A plugin's choice is a partition
// number, so kgo must offer every partition.
func (t *topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	t.last = nil
	t.b = t.st.cur.Load()
	if t.b != nil && t.b.pool == nil && t.b.err == nil {
		return t.inner.RequiresConsistency(r)
	}
	return true
}

func (t *topicPartitioner) Partition(r *kgo.Record, n int) int { return t.place(r, n, nil) }

func (t *topicPartitioner) PartitionByBackup(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	return t.place(r, n, backup)
}

func (t *topicPartitioner) place(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	b := t.b
	switch {
	case b == nil:
		return t.fail(r, fmt.Errorf("%w: topic %s: the binding is not loaded yet", ErrBindingUnavailable, t.topic))
	case b.err != nil:
		return t.fail(r, b.err)
	case b.pool == nil:
		return t.def(r, n, backup)
	}
	if r != t.last {
		t.last = r
		t.lastAnswer, t.lastErr = t.call(b, r, n)
	}
	switch v := t.lastAnswer; {
	case t.lastErr != nil:
		if b.fallback {
			return t.builtin(r, n, backup)
		}
		return t.fail(r, fmt.Errorf("%w: topic %s, plugin %s: %w", ErrPartitionerFailed, t.topic, b.info.Plugin, t.lastErr))
	case v >= 0:
		return int(v)
	case v == answerReject:
		return t.fail(r, fmt.Errorf("%w: topic %s, plugin %s", ErrRecordRejected, t.topic, b.info.Plugin))
	}
	return t.builtin(r, n, backup) // answerDefault
}

// What sandbox.Pool.Partition answers for abi.PartitionDefault and
// abi.PartitionReject.
const (
	answerDefault int32 = -1
	answerReject  int32 = -2
)

// call runs the plugin over r: 0..n-1, answerDefault or answerReject.
// The encoder and the buffers are reused from record to record.
func (t *topicPartitioner) call(b *binding, r *kgo.Record, n int) (int32, error) {
	t.kvs = t.kvs[:0]
	for _, h := range r.Headers {
		t.kvs = append(t.kvs, abi.KV{Key: strBytes(h.Key), Value: h.Value})
	}
	h := abi.Header{Stage: abi.StagePartition, Topic: t.topicBytes, Partition: abi.Unassigned, PartitionCount: uint32(n), BaseOffset: -1, NowMs: time.Now().UnixMilli()}
	if len(t.kvs) > 0 {
		h.Flags |= abi.FlagHeaders
	}
	attrs := uint32(0)
	if r.Value == nil {
		attrs |= abi.AttrTombstone
	}
	t.enc.Reset(h)
	t.enc.Add(abi.Entry{Attrs: attrs, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value, Headers: t.kvs})
	out, err := b.pool.Partition(t.p.ctx, b.timeout, &t.enc, t.out)
	clear(t.kvs)
	if err != nil {
		return 0, err
	}
	t.out = out
	return out[0], nil
}

// builtin is PartitionDefault: Kafka's murmur2 of the key, or the
// default partitioner for a keyless record.
func (t *topicPartitioner) builtin(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	if r.Key != nil {
		return int(abi.KafkaPartition(r.Key, int32(n)))
	}
	return t.def(r, n, backup)
}

// def asks the default partitioner.
func (t *topicPartitioner) def(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	if t.innerBackup != nil && backup != nil {
		return t.innerBackup.PartitionByBackup(r, n, backup)
	}
	return t.inner.Partition(r, n)
}

// fail keeps err in r's Context for RecordError and answers the choice
// kgo fails the record for.
func (t *topicPartitioner) fail(r *kgo.Record, err error) int {
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	r.Context = context.WithValue(ctx, failureKey{}, &failure{err: err})
	return -1
}

func strBytes(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// hooks attach a Partitioner to its client.
type hooks struct{ p *Partitioner }

func (h hooks) OnNewClient(cl *kgo.Client) {
	p := h.p
	p.mu.Lock()
	if p.mu.cl != nil && p.mu.cl != cl {
		p.mu.misuse = errors.New("one Partitioner was installed in two clients; give each client its own")
	}
	p.mu.cl = cl
	start := p.mu.misuse == nil && p.cfg.RefreshInterval > 0 && !p.mu.closed
	if start {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if start {
		go p.refresher()
	}
}

func (h hooks) OnClientClosed(*kgo.Client) {
	p := h.p
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return
	}
	p.mu.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	e := p.mu.engine
	p.mu.engine = nil
	p.mu.Unlock()
	if e != nil {
		if err := e.Close(context.Background()); err != nil {
			p.log.Warn("close plugin sandbox", "err", err)
		}
	}
}

// OnProduceRecordBuffered runs in Produce's goroutine before the record
// is partitioned: it loads the binding of a topic on its first record (or
// again after a failed load, once RetryAfter has passed) and waits for it,
// or for the record's context to end.
func (h hooks) OnProduceRecordBuffered(r *kgo.Record) {
	p := h.p
	if r.Context != nil {
		if f, ok := r.Context.Value(failureKey{}).(*failure); ok {
			f.stale.Store(true) // produced again: an earlier cause no longer applies
		}
	}
	if r.Topic == "" {
		return
	}
	st := p.state(r.Topic)
	if b := st.cur.Load(); b != nil && (b.err == nil || time.Since(b.at) < p.cfg.RetryAfter) {
		return
	}
	done := p.lazyLoad(st)
	var cancelled <-chan struct{}
	if r.Context != nil {
		cancelled = r.Context.Done()
	}
	select {
	case <-done:
	case <-cancelled:
	case <-p.ctx.Done():
	}
}

// refresher reads the bindings of every known topic again every
// RefreshInterval until the client closes.
func (p *Partitioner) refresher() {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.RefreshInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.LoadTimeout)
		if err := p.Refresh(ctx); err != nil {
			p.log.Warn("refresh partitioner bindings", "err", err)
		}
		cancel()
		if p.refreshed != nil {
			p.refreshed()
		}
	}
}
