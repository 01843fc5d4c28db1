package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// harness holds the state of one run.
type harness struct {
	o        *options
	root     string // the repository
	benchDir string // the bench module
	eddyBin  string
	natsBin  string
	work     string
	out      string
	rep      *report
	topicSeq int
	cleanups []func()
	// profile holds the io-profile files of the first node, given to every
	// later fresh node: the disk is the same, and so the node skips its
	// first-start disk probe (about 10 s).
	profile map[string][]byte
}

// ioProfileFiles are the files in which a node keeps the io-profile it
// derived for the data disk.
var ioProfileFiles = []string{"io-profile.json", "io-profile.toml"}

func newHarness(o *options) (*harness, error) {
	root, err := findRoot()
	if err != nil {
		return nil, err
	}
	h := &harness{o: o, root: root, benchDir: filepath.Join(root, "bench")}
	h.rep = newReport(o)
	h.out = o.out
	if h.out == "" {
		h.out = filepath.Join(root, "docs", "bench")
	}
	if h.out, err = filepath.Abs(h.out); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	parent := o.work
	if parent == "" {
		parent = filepath.Join(h.benchDir, ".work")
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if h.work, err = os.MkdirTemp(parent, "compare-"); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	h.rep.workDir = h.work
	h.rep.workFS = fsType(h.work)
	return h, nil
}

// findRoot walks up from the working directory to the repository's
// go.mod (module github.com/eddybroker/eddy).
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("module github.com/eddybroker/eddy\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no Eddy repository (go.mod of github.com/eddybroker/eddy) at or above %s", dir)
		}
	}
}

// fsType names the file system holding dir, from statfs.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	names := map[int64]string{
		0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
		0x794C7630: "overlayfs", 0x2FC12FC1: "zfs", 0xF2F52010: "f2fs",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("file system type %#x", st.Type)
}

// cleanup stops what is still running and removes the work directory.
func (h *harness) cleanup() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	if h.o.keep {
		log.Printf("kept %s", h.work)
		return
	}
	os.RemoveAll(h.work)
}

// buildEddy builds the eddy binary from the repository, unless -eddy
// names one.
func (h *harness) buildEddy() error {
	if h.o.eddyBin != "" {
		h.eddyBin = h.o.eddyBin
		return h.eddyVersion()
	}
	bin := filepath.Join(h.benchDir, ".bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", bin, err)
	}
	h.eddyBin = filepath.Join(bin, "eddy")
	version, commit := "dev", ""
	git := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	git.Dir = h.root
	if out, err := git.Output(); err == nil {
		version = strings.TrimSpace(string(out))
		h.rep.commit = "commit " + version
	}
	rev := exec.Command("git", "rev-parse", "HEAD")
	rev.Dir = h.root
	if out, err := rev.Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	log.Printf("building %s", h.eddyBin)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+version+" -X main.commit="+commit, "-o", h.eddyBin, "./cmd/eddy")
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/eddy: %w\n%s", err, out)
	}
	return h.eddyVersion()
}

func (h *harness) eddyVersion() error {
	out, err := exec.Command(h.eddyBin, "version").Output()
	if err != nil {
		return fmt.Errorf("%s version: %w", h.eddyBin, err)
	}
	h.rep.eddyVersion = strings.TrimSpace(string(out))
	return nil
}

// installNATS finds nats-server, installing the pinned version into
// bench/.bin when it is missing.
func (h *harness) installNATS() error {
	if h.o.natsServer != "" {
		h.natsBin = h.o.natsServer
	} else {
		bin := filepath.Join(h.benchDir, ".bin")
		h.natsBin = filepath.Join(bin, "nats-server")
		if _, err := os.Stat(h.natsBin); err != nil {
			log.Printf("installing nats-server %s into %s", natsVersion, bin)
			cmd := exec.Command("go", "install", "github.com/nats-io/nats-server/v2@"+natsVersion)
			cmd.Env = append(os.Environ(), "GOBIN="+bin)
			cmd.Dir = h.benchDir
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go install nats-server %s: %w\n%s", natsVersion, err, out)
			}
		}
	}
	out, err := exec.Command(h.natsBin, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", h.natsBin, err)
	}
	h.rep.natsVersion = strings.TrimSpace(string(out))
	return nil
}

// childEnv is the environment of the processes the harness starts: its
// own, less every EDDY_ variable, so that no setting leaks in.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDDY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// eddyServer is a running `eddy serve`.
type eddyServer struct {
	cmd     *exec.Cmd
	dir     string // data directory
	conf    string // configuration file
	kafka   string
	quic    string
	admin   string
	readyIn time.Duration // from exec to the ready line
	exited  chan error
	mu      sync.Mutex
	tail    []string // the last lines of its log
}

// eddyConfig is the configuration of a measured node: listeners on
// loopback ports of the kernel's choosing, flush mode as given (group or
// os), JSON logs at info level (the ready line carries the addresses),
// everything else the built-in defaults.
func eddyConfig(dataDir, flushMode string) string {
	return fmt.Sprintf(`# Generated by bench/compare.
[node]
data_dir = %q

[listeners.kafka]
addr = "127.0.0.1:0"

[listeners.quic]
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[flush]
mode = %q

[logging]
format = "json"
level = "info"
`, dataDir, flushMode)
}

// newEddy writes a configuration for a fresh node under the work
// directory and starts it.
func (h *harness) newEddy(name, flushMode string) (*eddyServer, error) {
	dir := filepath.Join(h.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	conf := filepath.Join(dir, "eddy.toml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(conf, []byte(eddyConfig(data, flushMode)), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", conf, err)
	}
	if len(h.profile) > 0 {
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", data, err)
		}
		for name, content := range h.profile {
			if err := os.WriteFile(filepath.Join(data, name), content, 0o644); err != nil {
				return nil, fmt.Errorf("seed the io-profile: %w", err)
			}
		}
	}
	s, err := h.startEddy(data, conf)
	if err != nil {
		return nil, err
	}
	if h.profile == nil {
		h.profile = map[string][]byte{}
		for _, name := range ioProfileFiles {
			if content, err := os.ReadFile(filepath.Join(data, name)); err == nil {
				h.profile[name] = content
			}
		}
		log.Printf("first node ready in %s; later nodes reuse its io-profile (%d files)", s.readyIn.Round(time.Millisecond), len(h.profile))
	}
	return s, nil
}

// startEddy starts a node on an existing configuration and waits for it
// to be ready.
func (h *harness) startEddy(dataDir, conf string) (*eddyServer, error) {
	s := &eddyServer{dir: dataDir, conf: conf, exited: make(chan error, 1)}
	s.cmd = exec.Command(h.eddyBin, "serve", "--config", conf)
	s.cmd.Env = childEnv()
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("eddy serve: %w", err)
	}
	begin := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start eddy serve: %w", err)
	}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.tail = append(s.tail, line)
			if len(s.tail) > 20 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "eddy is ready" {
				select {
				case ready <- m:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { s.exited <- s.cmd.Wait() }()
	h.cleanups = append(h.cleanups, func() { s.kill() })
	select {
	case m := <-ready:
		s.readyIn = time.Since(begin)
		s.kafka, _ = m["kafka"].(string)
		s.quic, _ = m["quic"].(string)
		s.admin, _ = m["admin"].(string)
		return s, nil
	case err := <-s.exited:
		s.exited <- err
		return nil, fmt.Errorf("eddy serve exited before it was ready: %v\n%s", err, s.logTail())
	case <-time.After(10 * time.Minute):
		s.kill()
		return nil, fmt.Errorf("eddy serve not ready within 10 minutes\n%s", s.logTail())
	}
}

func (s *eddyServer) logTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (s *eddyServer) stop() error {
	if s.cmd.ProcessState != nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err
		if err != nil {
			return fmt.Errorf("eddy serve: %w\n%s", err, s.logTail())
		}
		return nil
	case <-time.After(2 * time.Minute):
		s.kill()
		return fmt.Errorf("eddy serve did not stop within 2 minutes")
	}
}

// kill sends SIGKILL and waits for the process to end.
func (s *eddyServer) kill() {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	err := <-s.exited
	s.exited <- err
}

// rss returns the resident set size of the process, from VmRSS.
func (s *eddyServer) rss() (int64, error) {
	return processRSS(s.cmd.Process.Pid)
}

// processRSS reads VmRSS of a process from /proc.
func processRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("process %d: VmRSS line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("process %d: VmRSS line %q: %w", pid, line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("process %d: no VmRSS", pid)
}

// benchResult is the part of `eddy bench --json` the harness reads.
type benchResult struct {
	Mode    string     `json:"mode"`
	Produce *benchSide `json:"produce"`
	Consume *benchSide `json:"consume"`
}

type benchSide struct {
	Records     int64   `json:"records"`
	Bytes       int64   `json:"bytes"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error"`
	DurationSec float64 `json:"duration_s"`
	RecordsPerS float64 `json:"records_per_s"`
	MBPerS      float64 `json:"mb_per_s"`
	LatencyMs   *struct {
		P50  float64 `json:"p50"`
		P90  float64 `json:"p90"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
		Max  float64 `json:"max"`
	} `json:"latency_ms"`
}

// measure is one run's figures.
type measure struct {
	MBps, RecPerS          float64
	P50, P99, P999, MaxLat float64 // milliseconds; 0 when not measured
}

func (s *benchSide) measure() measure {
	m := measure{MBps: s.MBPerS, RecPerS: s.RecordsPerS}
	if l := s.LatencyMs; l != nil {
		m.P50, m.P99, m.P999, m.MaxLat = l.P50, l.P99, l.P999, l.Max
	}
	return m
}

// nextTopic returns a topic name not used before in this run.
func (h *harness) nextTopic(prefix string) string {
	h.topicSeq++
	return fmt.Sprintf("%s-%d", prefix, h.topicSeq)
}

// eddyBench runs `eddy bench MODE --json` against s over transport.
func (h *harness) eddyBench(s *eddyServer, transport, mode string, args ...string) (*benchResult, error) {
	addr := s.kafka
	if transport == "quic" {
		addr = s.quic
	}
	all := append([]string{"bench", mode, "--json", "--transport", transport, "--brokers", addr, "--data-dir", s.dir}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.eddyBin, all...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res benchResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("eddy %s: %w\n%s", strings.Join(all, " "), runErr, stderr.String())
		}
		return nil, fmt.Errorf("eddy %s: read its JSON result: %w", strings.Join(all, " "), err)
	}
	if runErr != nil {
		return &res, fmt.Errorf("eddy %s: %w\n%s", strings.Join(all, " "), runErr, stderr.String())
	}
	return &res, nil
}

// eddyProduce is one closed-loop produce run of d to a fresh topic,
// deleted afterwards.
func (h *harness) eddyProduce(s *eddyServer, transport string, size, producers, partitions int, extra ...string) (measure, error) {
	topic := h.nextTopic("produce")
	args := append([]string{"--topic", topic, "--duration", h.o.duration.String(), "--record-size", strconv.Itoa(size),
		"--producers", strconv.Itoa(producers), "--partitions", strconv.Itoa(partitions),
		"--max-buffered-records", strconv.Itoa(h.o.inflight)}, extra...)
	res, err := h.eddyBench(s, transport, "produce", args...)
	derr := h.deleteTopic(s, topic)
	if err != nil {
		return measure{}, err
	}
	if derr != nil {
		return measure{}, derr
	}
	return res.Produce.measure(), nil
}

// deleteTopic deletes a topic, so that runs do not fill the disk.
func (h *harness) deleteTopic(s *eddyServer, topic string) error {
	cmd := exec.Command(h.eddyBin, "topic", "delete", topic, "--transport", "tcp", "--brokers", s.kafka)
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("eddy topic delete %s: %w\n%s", topic, err, out)
	}
	return nil
}

// contender is one side of a comparison: a named run.
type contender struct {
	name string
	run  func() (measure, error)
}

// alternate runs the contenders in turn, -runs rounds, and returns each
// one's measures. A failed run is noted in the report and left out.
func (h *harness) alternate(what string, cs []contender) map[string][]measure {
	out := map[string][]measure{}
	for r := 0; r < h.o.runs; r++ {
		for _, c := range cs {
			m, err := c.run()
			if err != nil {
				h.rep.note("%s, %s, run %d: %v", what, c.name, r+1, err)
				log.Printf("%s, %s: %v", what, c.name, err)
				continue
			}
			log.Printf("%s, %s: %.1f MB/s, %.0f records/s, p99 %.2f ms", what, c.name, m.MBps, m.RecPerS, m.P99)
			out[c.name] = append(out[c.name], m)
		}
	}
	return out
}
