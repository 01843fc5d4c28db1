package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/eddybroker/eddy/appliance/node"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
	"github.com/spf13/cobra"
)

// serveFlags maps command-line flags to config keys.
var serveFlags = []struct{ flag, key, usage string }{
	{"data-dir", "node.data_dir", "data directory (env EDDY_DATA_DIR)"},
	{"kafka-addr", "listeners.kafka.addr", "Kafka TCP listener host:port (env EDDY_KAFKA_ADDR)"},
	{"quic-addr", "listeners.quic.addr", "QUIC UDP listener host:port (env EDDY_QUIC_ADDR)"},
	{"admin-addr", "admin.addr", "admin HTTP listener host:port (env EDDY_ADMIN_ADDR)"},
	{"node-id", "node.id", "node id"},
	{"log-level", "logging.level", "debug, info, warn or error"},
}

// loadConfig builds the effective config from the embedded defaults, the
// data directory's io-profile (unless disk.tuning is off), the file
// (--config or EDDY_CONFIG), the environment and the flags that were set
// on cmd.
func loadConfig(cmd *cobra.Command, file string) (*config.Config, error) {
	flags := map[string]string{}
	for _, f := range serveFlags {
		if fl := cmd.Flags().Lookup(f.flag); fl != nil && fl.Changed {
			flags[f.key] = fl.Value.String()
		}
	}
	opts := config.LoadOptions{File: file, Env: os.Environ(), Flags: flags}
	cfg, err := config.Load(opts)
	if err != nil || cfg.Disk.Tuning == "off" {
		return cfg, err
	}
	profile := disk.TOMLPath(cfg.Node.DataDir)
	if _, err := os.Stat(profile); err != nil {
		return cfg, nil // no io-profile yet
	}
	opts.IOProfile = profile
	return config.Load(opts)
}

// ensureIOProfile learns the data disk (probing it on first start or a new
// device, unless it wears) and saves the io-profile the node then loads.
// A failure leaves the node on its other settings: it is reported, not
// fatal.
func ensureIOProfile(ctx context.Context, cfg *config.Config, log *slog.Logger, status func(string)) {
	if err := os.MkdirAll(cfg.Node.DataDir, 0o755); err != nil {
		log.Warn("disk tuning skipped", "err", err)
		return
	}
	p, src, err := disk.Ensure(ctx, cfg.Node.DataDir, disk.EnsureOptions{
		Budget: cfg.Disk.ProbeBudget.D(),
		Progress: func(step string, frac float64) {
			status(fmt.Sprintf("probing the data disk: %s (%.0f%%)", step, 100*frac))
		},
	})
	if err != nil {
		log.Warn("disk tuning failed; built-in storage settings apply", "err", err)
		return
	}
	log.Info("io-profile", "source", string(src), "device", p.Info.Device.Name, "kind", string(p.Kind), "file", disk.TOMLPath(cfg.Node.DataDir))
}

func addConfigFlags(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVar(file, "config", "", "TOML config file (env EDDY_CONFIG); none needed")
	for _, f := range serveFlags {
		cmd.Flags().String(f.flag, "", f.usage)
	}
}

func newServeCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Long: `Run an Eddy node: recover storage, then serve Kafka over TCP and QUIC.

Configuration comes from the built-in defaults, then the file given with
--config (or EDDY_CONFIG), then EDDY_* environment variables, then flags.
SIGTERM or SIGINT drains and stops the node cleanly; SIGHUP reloads the
settings that can change at run time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, file)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return serve(cmd, cfg, file)
		},
	}
	addConfigFlags(cmd, &file)
	return cmd
}

func serve(cmd *cobra.Command, cfg *config.Config, file string) error {
	log, level := node.NewLogger(os.Stderr, cfg.Logging.Format, cfg.Logging.Level)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	notify := node.NewNotifier(log)

	// The data directory is this process's before anything touches it,
	// the disk probe included.
	lock, err := node.LockDataDir(vfs.OS, cfg.Node.DataDir)
	if err != nil {
		notify.Stopping("failed to start: " + err.Error())
		return err
	}
	started := make(chan *node.Node, 1)
	errc := make(chan error, 1)
	go func() {
		if cfg.Disk.Tuning == "auto" {
			ensureIOProfile(ctx, cfg, log, notify.Status)
			next, err := loadConfig(cmd, file)
			if err == nil && next.Node.DataDir != cfg.Node.DataDir {
				err = fmt.Errorf("node.data_dir: the io-profile may not change it (%s, was %s)", next.Node.DataDir, cfg.Node.DataDir)
			}
			if err != nil {
				lock.Close()
				errc <- fmt.Errorf("invalid configuration with the io-profile:\n%w", err)
				return
			}
			cfg = next
		}
		n, err := node.Start(ctx, cfg, node.Options{Logger: log, LogLevel: level, Version: version, Status: notify.Status, DirLock: lock})
		if err != nil {
			errc <- err
			return
		}
		started <- n
	}()
	n, stopSig, err := awaitStart(sigs, started, errc, cancel, log)
	if err != nil {
		notify.Stopping("failed to start: " + err.Error())
		return err
	}
	if n == nil {
		notify.Stopping("stopped during start-up")
		return nil
	}
	shutdown := func(s os.Signal) error {
		log.Info("draining and stopping", "signal", s.String())
		notify.Stopping("draining connections and flushing")
		grace := cfg.Listeners.QUIC.ShutdownGrace.D() + 20*time.Second
		sctx, scancel := context.WithTimeout(context.Background(), grace)
		go func() {
			// A second signal stops at once; the next start recovers.
			if s2 := <-sigs; s2 != syscall.SIGHUP {
				log.Warn("second signal: stopping without draining", "signal", s2.String())
				scancel()
			}
		}()
		err := n.Shutdown(sctx)
		scancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	}
	if stopSig != nil {
		// The start finished before it saw the stop: stop now, as the
		// signal will not come again.
		return shutdown(stopSig)
	}
	notify.Ready(n.StatusLine(), n.Live)
	for s := range sigs {
		if s != syscall.SIGHUP {
			return shutdown(s)
		}
		next, err := loadConfig(cmd, file)
		if err != nil {
			log.Error("reload refused: invalid configuration", "err", err)
			continue
		}
		applied, restart, err := n.Reload(next)
		if err != nil {
			log.Error("reload failed", "err", err)
			continue
		}
		log.Info("configuration reloaded", "applied", applied, "need_restart", restart)
	}
	return nil
}

// awaitStart waits for the node's start-up to end, stopping it early on
// SIGTERM or SIGINT (SIGHUP is ignored until the node runs). It returns
// the started node, with the stop signal when one arrived during start-up
// (the start may finish before it sees the cancellation: the caller then
// stops the node at once, since the signal will not come again); a nil
// node with no error when the start-up was stopped; or the start's error.
func awaitStart(sigs <-chan os.Signal, started <-chan *node.Node, errc <-chan error, cancel func(), log *slog.Logger) (*node.Node, os.Signal, error) {
	var stopSig os.Signal
	for {
		select {
		case err := <-errc:
			if stopSig != nil {
				log.Info("stopped during start-up", "err", err)
				return nil, nil, nil
			}
			return nil, nil, err
		case n := <-started:
			return n, stopSig, nil
		case s := <-sigs:
			if s != syscall.SIGHUP && stopSig == nil {
				log.Info("stopping during start-up", "signal", s.String())
				stopSig = s
				cancel()
			}
		}
	}
}
