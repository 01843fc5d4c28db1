package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/eddybroker/eddy/appliance/config"
)

// need returns the path of a tool the tests cannot do without; CI installs
// it (Debian packages systemd and make).
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found (Debian: apt-get install systemd make): %v", tool, err)
	}
	return p
}

// run runs a command and returns its stdout and stderr.
func run(t *testing.T, dir string, name string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// stage installs with install.mk into a fresh DESTDIR, using a stand-in
// binary, and returns the DESTDIR.
func stage(t *testing.T, prefix string) string {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "stage")
	bin := fakeBinary(t, "v1")
	install(t, dest, prefix, bin)
	return dest
}

func fakeBinary(t *testing.T, tag string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "eddy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho eddy "+tag+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func install(t *testing.T, dest, prefix, bin string) string {
	t.Helper()
	mk := need(t, "make")
	out, errs, err := run(t, t.TempDir(), mk, "-f", mustAbs(t, "install.mk"), "install",
		"EDDY_INSTALL_DEPS=", "BIN="+bin, "DESTDIR="+dest, "PREFIX="+prefix)
	if err != nil {
		t.Fatalf("make install: %v\n%s%s", err, out, errs)
	}
	return out
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// verify runs systemd-analyze verify and fails on any stderr output:
// unknown keys are only warnings with exit code 0.
func verify(t *testing.T, units ...string) (string, error) {
	t.Helper()
	analyze := need(t, "systemd-analyze")
	_, errs, err := run(t, t.TempDir(), analyze, append([]string{"verify"}, units...)...)
	return errs, err
}

// stagedUnits copies the installed units to a directory of their own and
// points ExecStart at the staged binary, so verify can check that the
// command exists without a --root tree of a whole system.
func stagedUnits(t *testing.T, dest string) (service, socket string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "units")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unitDir := filepath.Join(dest, "usr/lib/systemd/system")
	svc, err := os.ReadFile(filepath.Join(unitDir, "eddy.service"))
	if err != nil {
		t.Fatal(err)
	}
	staged := strings.Replace(string(svc), "ExecStart=/usr/bin/eddy ", "ExecStart="+filepath.Join(dest, "usr/bin/eddy")+" ", 1)
	if staged == string(svc) {
		t.Fatalf("installed eddy.service has no ExecStart=/usr/bin/eddy:\n%s", svc)
	}
	service, socket = filepath.Join(dir, "eddy.service"), filepath.Join(dir, "eddy.socket")
	if err := os.WriteFile(service, []byte(staged), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, err := os.ReadFile(filepath.Join(unitDir, "eddy.socket"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(socket, sock, 0o644); err != nil {
		t.Fatal(err)
	}
	return service, socket
}

func TestUnitsVerifyClean(t *testing.T) {
	dest := stage(t, "/usr")
	service, socket := stagedUnits(t, dest)
	if errs, err := verify(t, service, socket); err != nil || errs != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, errs)
	}

	// The check catches what verify only warns about: a misspelt key.
	svc, _ := os.ReadFile(service)
	broken := filepath.Join(t.TempDir(), "eddy.service")
	if err := os.WriteFile(broken, bytes.Replace(svc, []byte("ProtectSystem="), []byte("ProtectSytem="), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if errs, _ := verify(t, broken); !strings.Contains(errs, "ProtectSytem") {
		t.Fatalf("a misspelt key went unnoticed; stderr %q", errs)
	}
}

func TestServiceSecurityExposure(t *testing.T) {
	analyze := need(t, "systemd-analyze")
	out, errs, err := run(t, t.TempDir(), analyze, "security", "--offline=yes", "--threshold=20", mustAbs(t, "eddy.service"))
	if err != nil {
		t.Fatalf("systemd-analyze security --threshold=20: %v\n%s%s", err, out, errs)
	}
	m := regexp.MustCompile(`Overall exposure level for eddy\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
		t.Fatalf("exposure %.1f, want <= 2.0", v)
	}

	// The gate rejects an unhardened unit.
	plain := filepath.Join(t.TempDir(), "eddy.service")
	if err := os.WriteFile(plain, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := run(t, t.TempDir(), analyze, "security", "--offline=yes", "--threshold=20", plain); err == nil {
		t.Fatalf("an unhardened unit passed the threshold:\n%s", out)
	}
}

// unitValues returns every value of key in a unit file.
func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && k == key {
			vals = append(vals, v)
		}
	}
	return vals
}

func one(t *testing.T, path, key string) string {
	t.Helper()
	v := unitValues(t, path, key)
	if len(v) != 1 {
		t.Fatalf("%s: %s set %d times: %q", filepath.Base(path), key, len(v), v)
	}
	return v[0]
}

func TestUnitSettings(t *testing.T) {
	svc := mustAbs(t, "eddy.service")
	for key, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "User": "eddy", "Group": "eddy",
		"StateDirectory": "eddy", "ConfigurationDirectory": "eddy", "WatchdogSec": "30s",
		"MemoryDenyWriteExecute": "no", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"CapabilityBoundingSet": "", "Environment": "GOTRACEBACK=all",
		"ExecStart": "/usr/bin/eddy serve --config /etc/eddy/eddy.toml --data-dir /var/lib/eddy",
	} {
		if got := one(t, svc, key); got != want {
			t.Errorf("eddy.service %s=%q, want %q", key, got, want)
		}
	}
	if got := unitValues(t, svc, "ProcSubset"); len(got) != 0 {
		t.Errorf("ProcSubset=%v hides /proc/meminfo and /proc/diskstats from host metrics", got)
	}
	sock := mustAbs(t, "eddy.socket")
	for key, want := range map[string]string{"ReceiveBuffer": "8M", "SendBuffer": "8M", "FileDescriptorName": "quic", "Service": "eddy.service"} {
		if got := one(t, sock, key); got != want {
			t.Errorf("eddy.socket %s=%q, want %q", key, got, want)
		}
	}
	// The QUIC socket listens where the default config's QUIC listener does.
	if got, want := one(t, sock, "ListenDatagram"), config.Default().Listeners.QUIC.Addr; got != want {
		t.Errorf("eddy.socket ListenDatagram=%s, default listeners.quic.addr is %s", got, want)
	}
	// sysctl raises the UDP buffer ceiling to what the socket asks for.
	sysctl, err := os.ReadFile("sysctl.d/60-eddy.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"net.core.rmem_max", "net.core.wmem_max"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `\s*=\s*8388608\s*$`).Match(sysctl) {
			t.Errorf("60-eddy.conf does not set %s = 8388608 (8M):\n%s", key, sysctl)
		}
	}
}

func TestInstallLayout(t *testing.T) {
	dest := stage(t, "/usr")
	files := map[string]os.FileMode{
		"usr/bin/eddy":                        0o755,
		"usr/lib/systemd/system/eddy.service": 0o644,
		"usr/lib/systemd/system/eddy.socket":  0o644,
		"usr/lib/sysusers.d/eddy.conf":        0o644,
		"usr/lib/tmpfiles.d/eddy.conf":        0o644,
		"usr/lib/sysctl.d/60-eddy.conf":       0o644,
		"etc/eddy/eddy.toml":                  0o644,
	}
	for rel, mode := range files {
		st, err := os.Stat(filepath.Join(dest, rel))
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", rel, st.Mode().Perm(), mode)
		}
	}
	svc := filepath.Join(dest, "usr/lib/systemd/system/eddy.service")
	fields := strings.Fields(one(t, svc, "ExecStart"))
	// What ExecStart runs and reads exists where the unit expects it.
	if _, err := os.Stat(filepath.Join(dest, fields[0])); err != nil {
		t.Errorf("ExecStart binary %s: %v", fields[0], err)
	}
	conf := ""
	for i, f := range fields {
		if f == "--config" && i+1 < len(fields) {
			conf = fields[i+1]
		}
	}
	if conf != "/etc/eddy/eddy.toml" {
		t.Fatalf("ExecStart --config %q", conf)
	}
	got, _ := os.ReadFile(filepath.Join(dest, conf))
	want, _ := os.ReadFile("../appliance/config/default.toml")
	if !bytes.Equal(got, want) || len(want) == 0 {
		t.Error("installed eddy.toml is not appliance/config/default.toml")
	}
	if _, err := config.Load(config.LoadOptions{File: filepath.Join(dest, conf)}); err != nil {
		t.Errorf("installed eddy.toml does not load: %v", err)
	}
	// The user of the unit is the one sysusers.d creates, and the state
	// directory is the data directory tmpfiles.d prepares.
	sysusers, _ := os.ReadFile(filepath.Join(dest, "usr/lib/sysusers.d/eddy.conf"))
	if !regexp.MustCompile(`(?m)^u\s+eddy\s`).Match(sysusers) {
		t.Errorf("sysusers.d does not create the eddy user:\n%s", sysusers)
	}
	tmpfiles, _ := os.ReadFile(filepath.Join(dest, "usr/lib/tmpfiles.d/eddy.conf"))
	if !regexp.MustCompile(`(?m)^d\s+/var/lib/eddy\s+0750\s+eddy\s+eddy`).Match(tmpfiles) {
		t.Errorf("tmpfiles.d does not prepare /var/lib/eddy for eddy:\n%s", tmpfiles)
	}

	// A second install replaces the binary and units but keeps an
	// operator's eddy.toml.
	custom := []byte("[node]\nid = 7\n")
	if err := os.WriteFile(filepath.Join(dest, conf), custom, 0o640); err != nil {
		t.Fatal(err)
	}
	out := install(t, dest, "/usr", fakeBinary(t, "v2"))
	if got, _ := os.ReadFile(filepath.Join(dest, conf)); !bytes.Equal(got, custom) {
		t.Errorf("re-install overwrote the changed eddy.toml:\n%s", got)
	}
	if !strings.Contains(out, "keeping existing") {
		t.Errorf("re-install did not say it kept eddy.toml:\n%s", out)
	}
	if bin, _ := os.ReadFile(filepath.Join(dest, "usr/bin/eddy")); !bytes.Contains(bin, []byte("eddy v2")) {
		t.Error("re-install did not replace the binary")
	}

	// uninstall removes what install put there but the changed config.
	mk := need(t, "make")
	if o, e, err := run(t, t.TempDir(), mk, "-f", mustAbs(t, "install.mk"), "uninstall", "DESTDIR="+dest, "PREFIX=/usr"); err != nil {
		t.Fatalf("make uninstall: %v\n%s%s", err, o, e)
	}
	for rel := range files {
		_, err := os.Stat(filepath.Join(dest, rel))
		if rel == "etc/eddy/eddy.toml" {
			if err != nil {
				t.Errorf("uninstall removed the changed eddy.toml: %v", err)
			}
		} else if !os.IsNotExist(err) {
			t.Errorf("uninstall left %s", rel)
		}
	}
}

func TestInstallUnderAnotherPrefix(t *testing.T) {
	dest := stage(t, "/usr/local")
	svc := filepath.Join(dest, "usr/lib/systemd/system/eddy.service")
	if got := one(t, svc, "ExecStart"); !strings.HasPrefix(got, "/usr/local/bin/eddy serve ") {
		t.Fatalf("ExecStart=%s, want /usr/local/bin/eddy", got)
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/local/bin/eddy")); err != nil {
		t.Fatal(err)
	}
}

func TestInstallFromTheRootMakefile(t *testing.T) {
	// With install.mk included by the root Makefile, install builds first.
	mk := need(t, "make")
	wrapper := filepath.Join(t.TempDir(), "Makefile")
	body := "include " + mustAbs(t, "../Makefile") + "\ninclude " + mustAbs(t, "install.mk") + "\n"
	if err := os.WriteFile(wrapper, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, err := run(t, mustAbs(t, ".."), mk, "-n", "-f", wrapper, "install", "DESTDIR=/nonexistent/stage", "PREFIX=/usr")
	if err != nil {
		t.Fatalf("make -n install: %v\n%s%s", err, out, errs)
	}
	build := strings.Index(out, "go build")
	inst := strings.Index(out, "/nonexistent/stage/usr/bin/eddy")
	if build < 0 || inst < 0 || build > inst {
		t.Fatalf("install does not build bin/eddy first:\n%s", out)
	}
	if !strings.Contains(out, "/nonexistent/stage/usr/lib/systemd/system/eddy.service") || !strings.Contains(out, "appliance/config/default.toml") {
		t.Fatalf("install plan incomplete:\n%s", out)
	}
}

func TestSysusersAndTmpfilesApply(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	sysusers := need(t, "systemd-sysusers")
	tmpfiles := need(t, "systemd-tmpfiles")
	if os.Geteuid() != 0 {
		// Without root, only a dry run of sysusers is possible; tmpfiles
		// would need to chown.
		out, errs, err := run(t, root, sysusers, "--root="+root, "--dry-run", mustAbs(t, "sysusers.d/eddy.conf"))
		if err != nil || !strings.Contains(out+errs, "Creating user 'eddy'") {
			t.Fatalf("systemd-sysusers --dry-run: %v\n%s%s", err, out, errs)
		}
		return
	}
	if out, errs, err := run(t, root, sysusers, "--root="+root, mustAbs(t, "sysusers.d/eddy.conf")); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s%s", err, out, errs)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var uid int
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[0] == "eddy" {
			uid, _ = strconv.Atoi(f[2])
			if f[5] != "/var/lib/eddy" {
				t.Errorf("eddy home %q, want /var/lib/eddy", f[5])
			}
		}
	}
	if uid == 0 {
		t.Fatalf("no eddy user in passwd:\n%s", passwd)
	}
	if out, errs, err := run(t, root, tmpfiles, "--root="+root, "--create", mustAbs(t, "tmpfiles.d/eddy.conf")); err != nil || errs != "" {
		t.Fatalf("systemd-tmpfiles: %v\n%s%s", err, out, errs)
	}
	for dir, want := range map[string]struct {
		mode os.FileMode
		uid  int
	}{
		"var/lib/eddy": {0o750, uid}, "var/log/eddy": {0o750, uid}, "etc/eddy": {0o755, 0},
	} {
		st, err := os.Stat(filepath.Join(root, dir))
		if err != nil {
			t.Errorf("tmpfiles did not create %s: %v", dir, err)
			continue
		}
		owner := statUID(st)
		if st.Mode().Perm() != want.mode || owner != want.uid {
			t.Errorf("%s: mode %v owner %d, want %v and %d", dir, st.Mode().Perm(), owner, want.mode, want.uid)
		}
	}
}

// statUID returns the owner of a file.
func statUID(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}
