package disk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/eddybroker/eddy/appliance/config"
)

// The io-profile files in the data directory.
const (
	TOMLFile = "io-profile.toml" // configuration keys only: the io-profile layer
	JSONFile = "io-profile.json" // the whole Profile
)

// TOMLPath returns the io-profile.toml of dataDir, for
// config.LoadOptions.IOProfile.
func TOMLPath(dataDir string) string { return filepath.Join(dataDir, TOMLFile) }

// JSONPath returns the io-profile.json of dataDir.
func JSONPath(dataDir string) string { return filepath.Join(dataDir, JSONFile) }

// Fingerprint identifies the device and software a profile was measured
// with; when it changes, the measurements no longer describe the host.
type Fingerprint struct {
	Device       string `json:"device"`
	MajMin       string `json:"maj_min"`
	Model        string `json:"model"`
	Serial       string `json:"serial"`
	SizeBytes    int64  `json:"size_bytes"`
	Kind         Kind   `json:"kind"`
	FSType       string `json:"fs_type"`
	Kernel       string `json:"kernel"`
	ProbeVersion int    `json:"probe_version"`
}

// FingerprintOf returns info's fingerprint. Kind is the classification
// from sysfs alone, so it does not depend on measurements.
func FingerprintOf(info Info) Fingerprint {
	return Fingerprint{
		Device:       info.Device.Name,
		MajMin:       info.Device.MajMin,
		Model:        info.Device.Model,
		Serial:       info.Device.Serial,
		SizeBytes:    info.Device.SizeBytes,
		Kind:         info.Kind,
		FSType:       info.FSType,
		Kernel:       info.Kernel,
		ProbeVersion: ProbeVersion,
	}
}

// Diff lists the fields that differ between f and g ("serial", "kernel").
func (f Fingerprint) Diff(g Fingerprint) []string {
	var d []string
	add := func(name string, differ bool) {
		if differ {
			d = append(d, name)
		}
	}
	add("device", f.Device != g.Device)
	add("maj_min", f.MajMin != g.MajMin)
	add("model", f.Model != g.Model)
	add("serial", f.Serial != g.Serial)
	add("size", f.SizeBytes != g.SizeBytes)
	add("kind", f.Kind != g.Kind)
	add("fs_type", f.FSType != g.FSType)
	add("kernel", f.Kernel != g.Kernel)
	add("probe_version", f.ProbeVersion != g.ProbeVersion)
	return d
}

// tomlSections orders the sections of io-profile.toml.
var tomlSections = []string{"flush", "log", "io"}

// WriteTOML writes the settings in the TOML layout of the configuration
// file, each with its rule as a comment. Every key and value is checked
// against the configuration schema first.
func (p Profile) WriteTOML(w io.Writer) error {
	probe := config.Default()
	bySection := map[string][]Setting{}
	var order []string
	for _, s := range p.Settings {
		if err := probe.Set(s.Key, s.Value, config.IOProfile); err != nil {
			return fmt.Errorf("write io-profile: %w", err)
		}
		i := strings.LastIndexByte(s.Key, '.')
		section := s.Key[:i]
		if _, ok := bySection[section]; !ok {
			order = append(order, section)
		}
		bySection[section] = append(bySection[section], s)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# Eddy io-profile: storage settings derived for this host's data disk.\n")
	fmt.Fprintf(bw, "# Written by the disk probe; the configuration file, EDDY_* variables and\n")
	fmt.Fprintf(bw, "# flags override any key here. Re-derive with `eddy tune --write`.\n")
	fmt.Fprintf(bw, "# device: %s (%s), basis: %s\n", deviceLabel(p.Info), p.Kind, p.Basis)
	written := map[string]bool{}
	emit := func(section string) {
		if written[section] || len(bySection[section]) == 0 {
			return
		}
		written[section] = true
		fmt.Fprintf(bw, "\n[%s]\n", section)
		for _, s := range bySection[section] {
			fmt.Fprintf(bw, "# %s\n", oneLine(s.Rule))
			fmt.Fprintf(bw, "%s = %s\n", s.Key[len(section)+1:], tomlValue(s.Value))
		}
	}
	for _, s := range tomlSections {
		emit(s)
	}
	for _, s := range order {
		emit(s)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write io-profile: %w", err)
	}
	return nil
}

// tomlValue writes integers bare and everything else as a string; the
// configuration accepts sizes and durations as strings.
func tomlValue(v string) string {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return v
	}
	return strconv.Quote(v)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// deviceLabel names the device for people: "nvme0n1 (Samsung SSD 980)".
func deviceLabel(info Info) string {
	if info.Device.Name == "" {
		return info.FSType + " on " + info.MountPoint
	}
	if info.Device.Model != "" {
		return info.Device.Name + " " + info.Device.Model
	}
	return info.Device.Name
}

// Save writes p as <dataDir>/io-profile.toml and io-profile.json, each
// atomically (temporary file, fsync, rename, directory fsync).
func Save(dataDir string, p Profile) error {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("save io-profile: %w", err)
	}
	var tb bytes.Buffer
	if err := p.WriteTOML(&tb); err != nil {
		return err
	}
	jb, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("save io-profile: encode json: %w", err)
	}
	jb = append(jb, '\n')
	// JSON first: a crash between the two leaves a JSON whose fingerprint
	// matches, and the next start rewrites the TOML from it.
	if err := writeAtomic(JSONPath(dataDir), jb); err != nil {
		return fmt.Errorf("save io-profile: %w", err)
	}
	if err := writeAtomic(TOMLPath(dataDir), tb.Bytes()); err != nil {
		return fmt.Errorf("save io-profile: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data durably.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o640); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	serr := d.Sync()
	d.Close()
	if serr != nil {
		return fmt.Errorf("sync dir %s: %w", dir, serr)
	}
	return nil
}

// ErrNoProfile is returned by Load when the data directory has no
// io-profile.json.
var ErrNoProfile = errors.New("disk: no io-profile")

// Load reads <dataDir>/io-profile.json.
func Load(dataDir string) (Profile, error) {
	b, err := os.ReadFile(JSONPath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return Profile{}, ErrNoProfile
	}
	if err != nil {
		return Profile{}, fmt.Errorf("read io-profile: %w", err)
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return Profile{}, fmt.Errorf("read io-profile %s: %w", JSONPath(dataDir), err)
	}
	if p.Version != ProfileVersion {
		return Profile{}, fmt.Errorf("read io-profile %s: version %d, want %d", JSONPath(dataDir), p.Version, ProfileVersion)
	}
	return p, nil
}

// Source says where Ensure's profile came from.
type Source string

// The sources of an ensured profile.
const (
	// SourceStored: the stored profile's fingerprint matched; its
	// measurements were used again (and the rules re-applied).
	SourceStored Source = "stored"
	// SourceProbed: the disk was measured now.
	SourceProbed Source = "probed"
	// SourceClassified: not measured (a wear-sensitive medium, not
	// forced); the settings come from the classification alone.
	SourceClassified Source = "classified"
)

// EnsureOptions configures Ensure.
type EnsureOptions struct {
	Options
	// Budget bounds the probe; 0 means DefaultBudget.
	Budget time.Duration
	// Force probes even when the stored profile still matches and even on
	// wear-sensitive media.
	Force bool
	// Prober replaces Probe (tests count calls through it).
	Prober Prober
	// Progress is passed to the prober.
	Progress func(step string, frac float64)
	// Now replaces time.Now for Profile.Generated.
	Now func() time.Time
}

// Ensure makes <dataDir>/io-profile.{toml,json} describe the disk under
// dataDir and returns the profile and where it came from. It discovers the
// device, loads the stored profile, and probes again only when there is no
// usable stored profile or its fingerprint differs (new device, resized,
// other filesystem, kernel or probe version) — never on wear-sensitive media
// unless opts.Force. The rules are re-applied every time, so a changed RAM
// limit or rule takes effect without a probe. Files are rewritten only when
// their content changes.
func Ensure(ctx context.Context, dataDir string, opts EnsureOptions) (Profile, Source, error) {
	info, err := Discover(dataDir, opts.Options)
	if err != nil {
		return Profile{}, "", fmt.Errorf("ensure io-profile: %w", err)
	}
	fp := FingerprintOf(info)
	var notes []string
	stored, err := Load(dataDir)
	usable := err == nil
	switch {
	case errors.Is(err, ErrNoProfile):
	case err != nil:
		notes = append(notes, "stored profile unusable: "+err.Error())
	case stored.Fingerprint != fp:
		usable = false
		notes = append(notes, "device changed ("+strings.Join(stored.Fingerprint.Diff(fp), ", ")+"): stored profile discarded")
	case stored.Basis == BasisClassification && !info.WearSensitive:
		usable = false // measured nothing last time, but may now
	}

	var m *Measurements
	var src Source
	switch {
	case usable && !opts.Force:
		m, src = stored.Measurements, SourceStored
	case info.WearSensitive && !opts.Force:
		src = SourceClassified
		notes = append(notes, fmt.Sprintf("%s is wear-sensitive: not probed (force a probe with eddy tune --force)", info.Device.Name))
	default:
		prober := opts.Prober
		if prober == nil {
			prober = Probe
		}
		got, err := prober(ctx, dataDir, opts.Budget, opts.Progress)
		if err != nil {
			return Profile{}, "", fmt.Errorf("ensure io-profile: %w", err)
		}
		m, src = &got, SourceProbed
	}

	p := Derive(info, m)
	p.Notes = notes
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	p.Generated = now().UTC().Truncate(time.Second)
	if src == SourceStored {
		p.Generated = stored.Generated
		if same, err := unchanged(dataDir, p); err != nil {
			return Profile{}, "", fmt.Errorf("ensure io-profile: %w", err)
		} else if same {
			return p, src, nil
		}
	}
	if err := Save(dataDir, p); err != nil {
		return Profile{}, "", fmt.Errorf("ensure io-profile: %w", err)
	}
	return p, src, nil
}

// unchanged reports whether the files on disk already hold p's settings
// and io-profile.toml loads as a configuration layer.
func unchanged(dataDir string, p Profile) (bool, error) {
	var want bytes.Buffer
	if err := p.WriteTOML(&want); err != nil {
		return false, err
	}
	have, err := os.ReadFile(TOMLPath(dataDir))
	if err != nil || !bytes.Equal(have, want.Bytes()) {
		return false, nil
	}
	if _, err := config.Load(config.LoadOptions{IOProfile: TOMLPath(dataDir)}); err != nil {
		return false, nil
	}
	stored, err := Load(dataDir)
	if err != nil {
		return false, nil
	}
	if len(stored.Settings) != len(p.Settings) {
		return false, nil
	}
	for i := range p.Settings {
		if stored.Settings[i] != p.Settings[i] {
			return false, nil
		}
	}
	return true, nil
}
