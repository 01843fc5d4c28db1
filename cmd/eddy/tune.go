package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
	"github.com/eddybroker/eddy/appliance/disk"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// newTuneCmd is `eddy tune`: probe the data disk, show what was measured
// and derived, and with --write save the io-profile the node starts with.
func newTuneCmd() *cobra.Command {
	var (
		cfgFile string
		dataDir string
		budget  time.Duration
		force   bool
		write   bool
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "tune",
		Short: "Measure the data disk and derive storage settings (the io-profile)",
		Long: `Measure the disk under the data directory and derive storage settings.

The probe writes a capped test file (at most 1 GiB or 2% of the free space)
into the data directory and measures sequential writes, the write+fdatasync
latency of 4 KiB to 1 MiB batches, appends to a growing versus a
preallocated file, and random and sequential reads past the page cache, all
within --budget. It deletes its files when done.

SD cards, eMMC and USB flash wear with every write: on them the probe is
skipped and the settings come from the kind of device alone, unless --force.

With --write, <data>/io-profile.toml (configuration keys only) and
<data>/io-profile.json (the device fingerprint, measurements and inputs) are
saved; eddy serve applies io-profile.toml above the built-in defaults and
below the configuration file, the environment and flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := tuneDataDir(cmd, cfgFile, dataDir)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runTune(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), tuneOptions{
				dataDir: dir, budget: budget, force: force, write: write, json: asJSON,
			})
		},
	}
	cmd.Flags().StringVar(&cfgFile, "config", "", "TOML config file (env EDDY_CONFIG) naming node.data_dir")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory to measure (default: node.data_dir of the configuration)")
	cmd.Flags().DurationVar(&budget, "budget", disk.DefaultBudget, "time the probe may take")
	cmd.Flags().BoolVar(&force, "force", false, "probe even on wear-sensitive media (SD, eMMC, USB flash)")
	cmd.Flags().BoolVar(&write, "write", false, "save io-profile.toml and io-profile.json into the data directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the whole profile as JSON instead of the report")
	return cmd
}

// tuneDataDir resolves the directory to measure: the flag, else the
// configuration's node.data_dir.
func tuneDataDir(cmd *cobra.Command, file, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if file == "" {
		file = os.Getenv(config.EnvConfigFile)
	}
	cfg, err := config.Load(config.LoadOptions{File: file, Env: os.Environ()})
	if err != nil {
		return "", fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg.Node.DataDir, nil
}

type tuneOptions struct {
	dataDir string
	budget  time.Duration
	force   bool
	write   bool
	json    bool
	prober  disk.Prober // nil: disk.Probe
	root    string      // sysfs/procfs root; empty: the real one
}

// runTune discovers, probes (unless the medium is wear-sensitive and not
// forced), derives, reports and optionally saves.
func runTune(ctx context.Context, out, errw io.Writer, o tuneOptions) error {
	info, err := disk.Discover(o.dataDir, disk.Options{Root: o.root})
	if err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	var m *disk.Measurements
	var notes []string
	if info.WearSensitive && !o.force {
		notes = append(notes, fmt.Sprintf("%s is wear-sensitive (%s): not probed; settings follow from the kind of device (probe anyway with --force)", info.Device.Name, info.Kind))
	} else {
		prober := o.prober
		if prober == nil {
			prober = disk.Probe
		}
		bar := newTuneBar(errw)
		got, err := prober(ctx, o.dataDir, o.budget, bar.update)
		bar.finish(err)
		if err != nil {
			return fmt.Errorf("tune: %w", err)
		}
		m = &got
	}
	p := disk.Derive(info, m)
	p.Generated = time.Now().UTC().Truncate(time.Second)
	p.Notes = notes

	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("tune: write json: %w", err)
		}
	} else {
		printTuneReport(out, p)
	}
	if !o.write {
		if !o.json {
			fmt.Fprintf(out, "\nNot saved: run with --write to save %s for the next eddy serve.\n", disk.TOMLPath(o.dataDir))
		}
		return nil
	}
	if err := disk.Save(o.dataDir, p); err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	if err := tuneChownLike(o.dataDir, disk.TOMLPath(o.dataDir), disk.JSONPath(o.dataDir)); err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	if !o.json {
		fmt.Fprintf(out, "\nSaved %s and %s; the next eddy serve applies them (the configuration file, EDDY_* variables and flags still override).\n",
			disk.TOMLPath(o.dataDir), disk.JSONFile)
	}
	return nil
}

// printTuneReport writes what was found, measured and derived.
func printTuneReport(w io.Writer, p disk.Profile) {
	info, d := p.Info, p.Info.Device
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Data directory\t%s\n", info.DataDir)
	fmt.Fprintf(tw, "Filesystem\t%s on %s (%s), %s free of %s\n", info.FSType, info.MountPoint, info.MountSource, tuneBytes(float64(info.FreeBytes)), tuneBytes(float64(info.TotalBytes)))
	if d.Name != "" {
		var extra []string
		for _, kv := range [][2]string{{"partition", d.Partition}, {"via", strings.Join(d.Holders, ",")}, {"model", d.Model}, {"serial", d.Serial}, {"mmc type", d.MMCType}} {
			if kv[1] != "" {
				extra = append(extra, kv[0]+" "+kv[1])
			}
		}
		fmt.Fprintf(tw, "Device\t%s on %s, %s; %s\n", d.Name, d.Bus, tuneBytes(float64(d.SizeBytes)), strings.Join(extra, ", "))
		fmt.Fprintf(tw, "Queue\trotational=%v scheduler=%s nr_requests=%d logical/physical block %d/%d write_cache=%q\n",
			tuneBoolInt(d.Rotational), tuneOrDash(d.Scheduler), d.NRRequests, d.LogicalBlock, d.PhysicalBlock, d.WriteCache)
	}
	limit := "none"
	if info.CgroupMemLimit > 0 {
		limit = tuneBytes(float64(info.CgroupMemLimit))
	}
	fmt.Fprintf(tw, "Host\t%d CPUs (of %d), %s RAM usable (host %s, cgroup limit %s), kernel %s\n",
		info.CPUs, info.HostCPUs, tuneBytes(float64(info.RAMBytes)), tuneBytes(float64(info.HostRAMBytes)), limit, info.Kernel)
	fmt.Fprintf(tw, "Kind\t%s (wear-sensitive: %v)\n", p.Kind, p.WearSensitive)
	for _, r := range p.Reasons {
		fmt.Fprintf(tw, "\t- %s\n", r)
	}
	for _, wmsg := range info.Warnings {
		fmt.Fprintf(tw, "Warning\t%s\n", wmsg)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(tw, "Note\t%s\n", n)
	}
	tw.Flush()

	if m := p.Measurements; m != nil {
		fmt.Fprintf(w, "\nMeasured (%s of a %s budget, test file cap %s):\n", m.Elapsed, m.Budget, tuneBytes(float64(m.FileCap)))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  sequential write\t%s/s\t(%s written, fdatasync every 8MiB)\n", tuneBytes(m.SeqWriteBytesPerSec), tuneBytes(float64(m.SeqWriteBytes)))
		fmt.Fprintf(tw, "  sequential read\t%s/s\t(after FADV_DONTNEED)\n", tuneBytes(m.SeqReadBytesPerSec))
		for _, s := range m.Sync {
			fmt.Fprintf(tw, "  write+fdatasync %s\tp50 %s p99 %s\t%s/s (%d samples)\n", tuneBytes(float64(s.Bytes)), s.P50, s.P99, tuneBytes(s.BytesPerSec), s.Samples)
		}
		if s := m.DirectSync; s != nil {
			fmt.Fprintf(tw, "  O_DIRECT write+fdatasync %s\tp50 %s p99 %s\t%s/s (%d samples)\n", tuneBytes(float64(s.Bytes)), s.P50, s.P99, tuneBytes(s.BytesPerSec), s.Samples)
		}
		fmt.Fprintf(tw, "  4KiB append+fdatasync, growing file\tp50 %s p99 %s\t(%d samples)\n", m.Growing.P50, m.Growing.P99, m.Growing.Samples)
		fmt.Fprintf(tw, "  4KiB append+fdatasync, preallocated\tp50 %s p99 %s\t(%d samples)\n", m.Preallocated.P50, m.Preallocated.P99, m.Preallocated.Samples)
		r := m.RandRead
		fmt.Fprintf(tw, "  random 4KiB read (%s)\t%.0f/s at QD1, %.0f/s at QD%d\tp50 %s p99 %s\n", r.Method, r.IOPS, r.DeepIOPS, r.Depth, r.P50, r.P99)
		tw.Flush()
		for _, n := range m.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	} else {
		fmt.Fprintf(w, "\nMeasured: nothing (derived from the kind of device).\n")
	}

	fmt.Fprintf(w, "\nDerived (basis: %s):\n", p.Basis)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range p.Settings {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Key, s.Value, s.Rule)
	}
	tw.Flush()
}

// tuneBar shows the probe's progress on stderr: a redrawn bar on a
// terminal, one line per step otherwise.
type tuneBar struct {
	w        io.Writer
	tty      bool
	step     string
	lastDraw time.Time
}

func newTuneBar(w io.Writer) *tuneBar {
	b := &tuneBar{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		b.tty = err == nil
	}
	return b
}

func (b *tuneBar) update(step string, frac float64) {
	if !b.tty {
		if step != b.step {
			fmt.Fprintf(b.w, "probe: %3.0f%% %s\n", frac*100, step)
		}
		b.step = step
		return
	}
	now := time.Now()
	if step == b.step && now.Sub(b.lastDraw) < 100*time.Millisecond && frac < 1 {
		return
	}
	b.step, b.lastDraw = step, now
	const width = 30
	n := min(max(int(frac*width+0.5), 0), width)
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%% %-26s", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, step)
}

func (b *tuneBar) finish(err error) {
	if b.tty {
		fmt.Fprintln(b.w)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(b.w, "probe failed: %v\n", err)
	}
}

// tuneChownLike gives files the owner of dir when running as root, so a
// node running as its own user (systemd User=eddy) can read what root
// wrote into its data directory.
func tuneChownLike(dir string, files ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	for _, f := range files {
		if err := os.Lchown(f, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", f, err)
		}
	}
	return nil
}

// tuneBytes formats a byte count or rate for people ("874MiB").
func tuneBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v >= 100 || i == 0 || v == float64(int64(v)) {
		return fmt.Sprintf("%.0f%s", v, units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

func tuneBoolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func tuneOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
