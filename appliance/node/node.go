// Package node is the one driver of an Eddy node: it recovers storage,
// opens the metadata, starts the broker, binds the Kafka (TCP), QUIC and
// admin listeners, runs the retention schedule, reloads hot settings and
// shuts everything down in order. Everything else in appliance/ is a part
// it wires together.
//
// Start order: storage recovery, metadata, broker, TLS identity, then the
// listeners; the node is ready only when all are up. Shutdown order: stop
// accepting, let connections finish the requests they have read, then
// snapshot producer state, flush, close the logs and leave the
// clean-shutdown marker.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddybroker/eddy/appliance/admin"
	"github.com/eddybroker/eddy/appliance/broker"
	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/eddybroker/eddy/appliance/group"
	"github.com/eddybroker/eddy/appliance/metadata"
	"github.com/eddybroker/eddy/appliance/storage"
	"github.com/eddybroker/eddy/appliance/storage/cleaner"
	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
	"github.com/eddybroker/eddy/appliance/telemetry"
	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
)

// Listener names, as requests see them.
const (
	ListenerKafka = "kafka"
	ListenerQUIC  = "quic"
)

// Options are the node's collaborators.
type Options struct {
	Logger   *slog.Logger
	LogLevel *slog.LevelVar // adjusted on reload; may be nil
	Version  string
	// Status, if set, hears progress lines (for sd_notify STATUS=).
	Status func(string)
	// FS is the filesystem of the data directory; nil means the real one
	// (tests inject faults through it).
	FS vfs.FS
	// DirLock is the data directory's lock when the caller took it
	// first with LockDataDir (eddy serve does, before it probes the
	// disk). Start owns it from then on, also when it fails, and the
	// node releases it when it stops. Nil: Start takes it.
	DirLock io.Closer
}

// dirLockFile is the file in the data directory whose exclusive lock marks
// the directory as in use by a node.
const dirLockFile = ".lock"

// LockDataDir takes the exclusive lock that keeps a second node off the
// data directory dir (created if needed), or fails at once naming the
// directory when another process holds it. The lock goes with the
// process, so a node killed with -9 does not keep it.
func LockDataDir(fsys vfs.FS, dir string) (io.Closer, error) {
	if err := vfs.MkdirAllDurable(fsys, dir); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	lk, ok := fsys.(vfs.Locker)
	if !ok {
		return io.NopCloser(nil), nil
	}
	l, err := lk.Lock(filepath.Join(dir, dirLockFile))
	switch {
	case errors.Is(err, vfs.ErrLocked):
		return nil, fmt.Errorf("data dir %s is in use by another process (stop it, or give this node its own data dir): %w", dir, err)
	case err != nil:
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return l, nil
}

// Node is a running node.
type Node struct {
	cfg   atomic.Pointer[config.Config]
	opts  Options
	log   *slog.Logger
	dir   string
	store *storage.Store
	meta  *metadata.Local
	brk   *broker.Broker
	ident *tlsid.Identity

	kafkaLn   net.Listener
	kafkaSrv  *kafkawire.Server
	quicSrv   *quic.Server
	quicKafka *kafkawire.Server
	adminSrv  *http.Server
	adminLn   net.Listener

	cleaner    *cleaner.Cleaner
	plugins    *host.Host
	metrics    *telemetry.Metrics
	guard      *disk.Guard
	stopProf   func()
	lock       io.Closer    // the data directory's
	died       atomic.Value // string: a serve loop that ended unexpectedly
	ready      atomic.Bool
	notReady   atomic.Value // string: why not ready
	retention  chan struct{}
	stopOnce   sync.Once
	background sync.WaitGroup // listeners
	maint      sync.WaitGroup // retention and the cleaner: stopped before storage closes
	cleanStart bool
}

// Start recovers storage and starts serving. It returns once every
// listener is bound and the node is ready.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		if opts.DirLock != nil {
			opts.DirLock.Close()
		}
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Status == nil {
		opts.Status = func(string) {}
	}
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	n := &Node{opts: opts, log: opts.Logger, dir: cfg.Node.DataDir, retention: make(chan struct{})}
	n.cfg.Store(cfg)
	n.notReady.Store("starting")
	if err := n.start(ctx, cfg); err != nil {
		n.abort()
		return nil, err
	}
	n.ready.Store(true)
	n.notReady.Store("")
	n.opts.Status("ready")
	n.log.Info("eddy is ready", "node", cfg.Node.ID, "kafka", n.KafkaAddr(), "quic", n.QUICAddr(), "admin", n.AdminAddr(), "data", n.dir)
	return n, nil
}

func (n *Node) start(ctx context.Context, cfg *config.Config) error {
	if n.lock = n.opts.DirLock; n.lock == nil {
		l, err := LockDataDir(n.opts.FS, n.dir)
		if err != nil {
			return err
		}
		n.lock = l
	}
	n.metrics = telemetry.New(telemetry.Options{DataDir: n.dir, NoHost: !cfg.Metrics.Host, Version: n.opts.Version, Logger: n.log})
	if p, err := disk.Load(n.dir); err == nil {
		n.metrics.SetIOProfile(p)
	}
	n.guard = disk.NewGuard(n.dir, watermarks(cfg), nil)
	if _, err := n.guard.Check(); err != nil {
		return fmt.Errorf("data dir %s: %w", n.dir, err)
	}
	n.metrics.SetProduceRefused(n.guard.Refusing())
	if err := n.startProfiling(cfg); err != nil {
		return err
	}
	// The admin API comes up first, so /readyz can say "recovering".
	if cfg.Admin.Addr != "" {
		if err := n.startAdmin(cfg.Admin); err != nil {
			return err
		}
	}
	n.notReady.Store("recovering storage")
	n.opts.Status("recovering storage")
	fc := flushConfig(cfg)
	fc.Observer = n.metrics
	st, err := storage.Open(n.opts.FS, storage.Config{
		Dir:   filepath.Join(n.dir, "logs"),
		Flush: fc,
		Progress: func(done, total int, tp storage.TopicPartition, rep partlog.RecoveryReport) {
			msg := fmt.Sprintf("recovering %d/%d partitions", done, total)
			n.notReady.Store(msg)
			n.opts.Status(msg)
			if rep.TruncatedBytes > 0 || rep.DeletedSegments > 0 {
				n.log.Warn("recovered a damaged log tail", "partition", tp.String(), "truncated_bytes", rep.TruncatedBytes, "deleted_segments", rep.DeletedSegments, "reasons", rep.Reasons)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("open storage: %w", err)
	}
	n.store = st
	n.cleanStart = st.WasClean()
	if n.meta, err = metadata.OpenLocal(n.opts.FS, filepath.Join(n.dir, "meta"), cfg.Kafka.ClusterID); err != nil {
		return err
	}
	if n.ident, err = tlsid.Load(tlsid.Options{
		Dir: filepath.Join(n.dir, "tls"), Hosts: tlsHosts(cfg),
		CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, CAFile: cfg.TLS.CAFile,
	}); err != nil {
		return fmt.Errorf("tls identity: %w", err)
	}

	// Bind the listeners before the broker exists, so Metadata can
	// advertise the bound ports (port 0 in tests).
	listeners := map[string]string{}
	if addr := cfg.Listeners.Kafka.Addr; addr != "" {
		if n.kafkaLn, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen on listeners.kafka.addr %s: %w", addr, err)
		}
		listeners[ListenerKafka] = advertise(cfg.Listeners.Kafka.Advertised, n.kafkaLn.Addr())
	}
	var udp net.PacketConn
	if addr := cfg.Listeners.QUIC.Addr; addr != "" {
		if udp, err = net.ListenPacket("udp", addr); err != nil {
			return fmt.Errorf("listen on listeners.quic.addr %s: %w", addr, err)
		}
		listeners[ListenerQUIC] = advertise(cfg.Listeners.QUIC.Advertised, udp.LocalAddr())
	}
	n.notReady.Store("opening partitions")
	bc := brokerConfig(cfg, listeners, n.log)
	bc.ProduceGuard, bc.Observer = n.guard.Err, n.metrics
	bc.LogBase.CanPreallocate = n.canPreallocate
	if cfg.Plugins.Enabled {
		if n.plugins, err = n.startPluginHost(cfg); err != nil {
			if udp != nil {
				udp.Close()
			}
			return err
		}
		bc.Plugins = n.plugins
	}
	n.brk, err = broker.New(bc, st, n.meta)
	if err != nil {
		if udp != nil {
			udp.Close()
		}
		return err
	}
	n.metrics.SetPartitionSource(n.partitionStats)
	wcfg := kafkawire.Config{MaxFrameSize: int(cfg.Kafka.MaxFrameSize), MaxInflight: cfg.Kafka.MaxInflightPerConn, Logger: n.log,
		Observer: wireObserver{n.metrics}, MaxConns: cfg.Kafka.MaxConnections, MaxConnsPerIP: cfg.Kafka.MaxConnectionsPerIP}
	if n.kafkaLn != nil {
		n.kafkaSrv = kafkawire.NewServer(ListenerKafka, n.brk, wcfg)
		n.goServe("kafka listener", func() error { return n.kafkaSrv.Serve(context.Background(), n.kafkaLn) })
	}
	if udp != nil {
		q := cfg.Listeners.QUIC
		n.quicSrv, err = quic.NewServer(udp, n.ident.ServerConfig(), quic.Config{
			HandshakeTimeout: q.HandshakeTimeout.D(), IdleTimeout: q.IdleTimeout.D(), KeepAlivePeriod: q.Keepalive.D(),
			InitialStreamWindow: uint64(q.InitialStreamWindow), MaxStreamWindow: uint64(q.MaxStreamWindow),
			InitialConnWindow: uint64(q.InitialConnWindow), MaxConnWindow: uint64(q.MaxConnWindow),
			MaxIncomingStreams: q.MaxIncomingStreams, ShutdownGrace: q.ShutdownGrace.D(),
			StatelessResetKeyFile: filepath.Join(n.dir, "tls", "quic-reset.key"),
			Logger:                n.log,
		})
		if err != nil {
			udp.Close()
			return fmt.Errorf("quic listener: %w", err)
		}
		n.quicKafka = kafkawire.NewServer(ListenerQUIC, n.brk, wcfg)
		n.quicSrv.Handle(quic.ALPNKafka, quic.StreamHandler(func(ctx context.Context, c net.Conn) {
			n.quicKafka.ServeConn(c)
		}))
		n.goServe("quic listener", func() error { return n.quicSrv.Serve(context.Background()) })
	}
	n.maint.Add(2)
	go n.runRetention()
	go n.watchDisk()
	n.cleaner = cleaner.New(cleaner.Config{
		Interval: cfg.Log.CleanerInterval.D(), MaxMapBytes: cfg.Log.CleanerDedupeBuffer.Int64(),
		IOBytesPerSecond: cfg.Log.CleanerIOMaxBytes.Int64(), Logger: n.log, Policy: n.brk.CleanupPolicy,
	}, func() []*partlog.Log {
		var out []*partlog.Log
		for _, l := range st.Logs() {
			out = append(out, l)
		}
		return out
	})
	n.maint.Add(1)
	go func() {
		defer n.maint.Done()
		n.cleaner.Run(n.retention)
	}()
	return ctx.Err()
}

// goServe runs a listener's serve loop and logs how it ended.
func (n *Node) goServe(what string, serve func() error) {
	n.background.Add(1)
	go func() {
		defer n.background.Done()
		err := serve()
		if err != nil && !errors.Is(err, quic.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error(what+" stopped", "err", err)
		}
		if n.ready.Load() {
			n.died.Store(what + " stopped")
		}
	}()
}

func (n *Node) startAdmin(cfg config.Admin) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on admin.addr %s: %w", cfg.Addr, err)
	}
	n.adminLn = ln
	n.adminSrv = &http.Server{Handler: admin.Handler(n, admin.Options{Pprof: cfg.Pprof}), ReadHeaderTimeout: 10 * time.Second}
	n.goServe("admin listener", func() error {
		if err := n.adminSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// runRetention deletes expired segments every log.retention_check_interval
// (re-read each round, so a reload applies).
func (n *Node) runRetention() {
	defer n.maint.Done()
	for {
		t := time.NewTimer(n.cfg.Load().Log.RetentionCheckInterval.D())
		select {
		case <-n.retention:
			t.Stop()
			return
		case <-t.C:
		}
		if err := n.store.EnforceRetention(); err != nil {
			n.log.Warn("retention pass failed on some partitions; they are retried next pass", "err", err)
		}
	}
}

// Ready implements admin.Source: recovered, listening, and the data disk
// below its hard watermark.
func (n *Node) Ready() (bool, string) {
	if !n.ready.Load() {
		why, _ := n.notReady.Load().(string)
		return false, why
	}
	if err := n.guard.Err(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// Metrics implements admin.Source.
func (n *Node) Metrics() http.Handler {
	if n.metrics == nil {
		return nil
	}
	return n.metrics.Handler()
}

// Live reports whether the node's loops make progress: the group commit
// flushes within limit, produce requests get their appends within limit,
// and every listener still serves. nil means alive; a watchdog pings
// systemd only then.
func (n *Node) Live(limit time.Duration) error {
	if why, _ := n.died.Load().(string); why != "" {
		return errors.New(why)
	}
	if n.store != nil {
		if err := n.store.Committer().Stalled(limit); err != nil {
			return err
		}
	}
	if n.brk != nil {
		if err := n.brk.Stalled(limit); err != nil {
			return err
		}
	}
	return nil
}

// Status implements admin.Source.
func (n *Node) Status() admin.Status {
	ok, why := n.Ready()
	st := admin.Status{NodeID: n.cfg.Load().Node.ID, Version: n.opts.Version, Ready: ok, Reason: why, DataDir: n.dir, CleanStart: n.cleanStart}
	if n.meta != nil {
		st.ClusterID = n.meta.ClusterID()
		for _, t := range n.meta.Topics() {
			if t.Internal {
				continue
			}
			st.Topics++
			st.Partitions += int(t.Partitions)
		}
	}
	return st
}

// StatusLine is a one-line summary for service managers: topics,
// partitions and the data disk's usage.
func (n *Node) StatusLine() string {
	st := n.Status()
	return fmt.Sprintf("ready: %d topics, %d partitions; data disk %.0f%% used", st.Topics, st.Partitions, n.guard.Last().UsedPercent())
}

// Partitions implements admin.Source.
func (n *Node) Partitions(topic string) any {
	if n.brk == nil {
		return []broker.PartitionStatus{}
	}
	return n.brk.Partitions(topic)
}

// KafkaAddr returns the bound Kafka TCP address ("" when disabled).
func (n *Node) KafkaAddr() string { return addrOf(n.kafkaLn) }

// QUICAddr returns the bound QUIC UDP address ("" when disabled).
func (n *Node) QUICAddr() string {
	if n.quicSrv == nil {
		return ""
	}
	return n.quicSrv.Addr().String()
}

// AdminAddr returns the bound admin HTTP address ("" when disabled).
func (n *Node) AdminAddr() string { return addrOf(n.adminLn) }

// Identity returns the node's TLS identity.
func (n *Node) Identity() *tlsid.Identity { return n.ident }

// startPluginHost starts the WebAssembly host, its compiled code cached
// under the data directory.
func (n *Node) startPluginHost(cfg *config.Config) (*host.Host, error) {
	pc := cfg.Plugins
	h, err := host.New(host.Config{Config: sandbox.Config{
		CacheDir:            filepath.Join(n.dir, "plugins", "cache"),
		Interpreter:         pc.Engine == "interpreter",
		MemoryLimitBytes:    uint64(pc.MemoryMaxBytes.Int64()),
		Instances:           pc.Instances,
		MaxCallsPerInstance: pc.MaxCallsPerInstance,
		Logger:              n.log,
		Observe: func(d sandbox.Digest, op string, dur time.Duration, failure string) {
			kind := "cleanup"
			switch op {
			case abi.ExportPartition:
				kind = "partitioner"
			case abi.ExportTransform:
				kind = "transform"
			}
			n.metrics.ObservePluginCall(d.String(), kind, dur, failure)
		},
	}})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// Broker returns the broker (for tests and tools in the same process).
func (n *Node) Broker() *broker.Broker { return n.brk }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Shutdown drains and stops the node: listeners stop accepting, open
// connections finish the requests they have read (bounded by ctx), then
// producer state is snapshotted, logs are flushed and closed, and the
// clean-shutdown marker is written.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	n.stopOnce.Do(func() {
		n.ready.Store(false)
		n.notReady.Store("shutting down")
		n.opts.Status("shutting down")
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range []*kafkawire.Server{n.kafkaSrv, n.quicKafka} {
			if s != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Shutdown(ctx); err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("drain %s connections: %w", s.Listener, err))
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		if n.quicSrv != nil {
			if err := n.quicSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("quic shutdown: %w", err))
			}
		}
		close(n.retention)
		n.maint.Wait()
		errs = append(errs, n.closeStorage()...)
		if n.adminSrv != nil {
			n.adminSrv.Shutdown(ctx)
		}
		if n.stopProf != nil {
			n.stopProf()
		}
		n.background.Wait()
		n.lock.Close()
		n.log.Info("eddy stopped", "clean", len(errs) == 0)
	})
	return errors.Join(errs...)
}

func (n *Node) closeStorage() []error {
	var errs []error
	if n.brk != nil {
		if err := n.brk.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.plugins != nil {
		if err := n.plugins.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("close plugin host: %w", err))
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// abort undoes a failed Start.
func (n *Node) abort() {
	if n.kafkaSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.kafkaSrv.Shutdown(ctx)
		cancel()
	} else if n.kafkaLn != nil {
		n.kafkaLn.Close()
	}
	if n.quicSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.quicSrv.Shutdown(ctx)
		cancel()
	}
	select {
	case <-n.retention:
	default:
		close(n.retention)
	}
	n.maint.Wait()
	n.closeStorage()
	if n.adminSrv != nil {
		n.adminSrv.Close()
	}
	n.background.Wait()
	if n.stopProf != nil {
		n.stopProf()
	}
	if n.lock != nil {
		n.lock.Close()
	}
}

// Reload applies the hot settings of next (flush bounds, logging level,
// retention interval, topic auto-creation) and reports the changed keys
// that need a restart.
func (n *Node) Reload(next *config.Config) (applied, needRestart []string, err error) {
	if err := next.Validate(); err != nil {
		return nil, nil, err
	}
	cur := n.cfg.Load()
	for _, key := range config.Diff(cur, next) {
		if !config.Reloadable(key) || key == "flush.mode" {
			needRestart = append(needRestart, key)
			continue
		}
		applied = append(applied, key)
	}
	fc := flushConfig(next)
	fc.Mode = n.store.Committer().Mode() // a mode change waits for a restart
	if err := n.store.Committer().Reconfigure(fc); err != nil {
		return nil, nil, err
	}
	if n.opts.LogLevel != nil {
		n.opts.LogLevel.Set(ParseLevel(next.Logging.Level))
	}
	n.brk.SetAutoCreateTopics(next.AutoCreateTopics())
	n.guard.SetWatermarks(watermarks(next))
	merged := cur.Clone()
	for _, key := range applied {
		v, _ := next.Get(key)
		if err := merged.Set(key, v, next.Source(key)); err != nil {
			return nil, nil, err
		}
	}
	n.cfg.Store(merged)
	return applied, needRestart, nil
}

// Config returns the configuration in effect.
func (n *Node) Config() *config.Config { return n.cfg.Load() }

func flushConfig(cfg *config.Config) flush.Config {
	mode, _ := flush.ParseMode(cfg.Flush.Mode) // Validate checked it
	return flush.Config{
		Mode: mode, MaxDelay: cfg.Flush.MaxDelay.D(), MaxBatchBytes: cfg.Flush.MaxBatchBytes.Int64(),
		MaxInflight: cfg.Flush.MaxInflight, SyncConcurrency: cfg.Flush.SyncConcurrency,
		SyncFSMin: cfg.Flush.SyncFSMinPartitions,
	}
}

func brokerConfig(cfg *config.Config, listeners map[string]string, log *slog.Logger) broker.Config {
	l := cfg.Log
	ms := func(d config.Duration) string {
		if d.IsForever() {
			return "-1"
		}
		return strconv.FormatInt(d.D().Milliseconds(), 10)
	}
	base := partlog.DefaultConfig("")
	base.VerifyReads = l.VerifyReads
	// A derived preallocation larger than the segment is clamped to it.
	base.PreallocateBytes = min(l.PreallocateBytes.Int64(), l.SegmentBytes.Int64())
	base.DropCacheOnSeal = cfg.IO.Fadvise == "drop-sealed"
	base.WriteBufferBytes = cfg.IO.WriteBufferBytes.Int64()
	base.WritebackBytes = cfg.IO.WritebackBytes.Int64()
	base.MaxUncompressed = max(int(cfg.Kafka.MaxFrameSize), 64<<20)
	defaults := map[string]string{
		"segment.bytes":          strconv.FormatInt(l.SegmentBytes.Int64(), 10),
		"segment.ms":             ms(l.SegmentMs),
		"retention.ms":           ms(l.RetentionMs),
		"retention.bytes":        strconv.FormatInt(l.RetentionBytes.Int64(), 10),
		"index.interval.bytes":   strconv.FormatInt(l.IndexIntervalBytes.Int64(), 10),
		"segment.index.bytes":    strconv.FormatInt(l.SegmentIndexBytes.Int64(), 10),
		"cleanup.policy":         l.CleanupPolicy,
		"max.message.bytes":      strconv.FormatInt(l.MaxMessageBytes.Int64(), 10),
		"message.timestamp.type": l.MessageTimestampType,
		"preallocate":            strconv.FormatBool(base.PreallocateBytes > 0),
	}
	gc := group.DefaultConfig()
	gr := cfg.Groups
	gc.InitialRebalanceDelay, gc.MinSessionTimeout, gc.MaxSessionTimeout = gr.InitialRebalanceDelay.D(), gr.MinSessionTimeout.D(), gr.MaxSessionTimeout.D()
	gc.MaxGroupSize, gc.ConsumerSessionTimeout, gc.ConsumerHeartbeatInterval = gr.MaxSize, gr.ConsumerSessionTimeout.D(), gr.ConsumerHeartbeatInterval.D()
	gc.DefaultAssignor, gc.OffsetsRetention = gr.Assignor, gr.OffsetsRetention.D()
	return broker.Config{
		Groups:                   gc,
		OffsetsPartitions:        gr.OffsetsTopicPartitions,
		OffsetsSegmentBytes:      int64(gr.OffsetsSegmentBytes),
		NodeID:                   cfg.Node.ID,
		Listeners:                listeners,
		AutoCreateTopics:         cfg.AutoCreateTopics(),
		DefaultPartitions:        cfg.Topics.DefaultPartitions,
		DefaultReplicationFactor: cfg.Topics.DefaultReplicationFactor,
		TopicDefaults:            defaults,
		LogBase:                  base,
		ValidateRecords:          cfg.Kafka.ValidateRecords,
		FetchMaxBytes:            int(cfg.Kafka.FetchMaxBytes),
		ReadConcurrency:          cfg.IO.ReadConcurrency,
		Logger:                   log,
	}
}

// advertise returns the configured advertised address, or the bound one
// with a wildcard host replaced by the machine's name.
func advertise(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// tlsHosts are the names the node certificate must cover: the configured
// extra hosts and the advertised hosts.
func tlsHosts(cfg *config.Config) []string {
	hosts := append([]string(nil), cfg.TLS.Hosts...)
	for _, a := range []string{cfg.Listeners.QUIC.Advertised, cfg.Listeners.QUIC.Addr} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}
