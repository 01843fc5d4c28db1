package plugintest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var builds sync.Map // absolute source path -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// BuildDir is where BuildGo writes modules. Each build is written to a
// temporary file and renamed, so concurrent test processes may share it.
var BuildDir = filepath.Join(os.TempDir(), "eddy-plugintest-build")

// BuildGo compiles the Go plugin package in dir (a path relative to the
// test's working directory, or absolute) with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared
//
// and returns the .wasm path. A package is built once per process.
func BuildGo(t testing.TB, dir string) string {
	t.Helper()
	p, err := BuildGoErr(dir)
	if err != nil {
		t.Fatalf("build plugin %s: %v", dir, err)
	}
	return p
}

// BuildGoErr is BuildGo returning its error.
func BuildGoErr(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("build plugin %s: %w", dir, err)
	}
	v, _ := builds.LoadOrStore(abs, &build{})
	b := v.(*build)
	b.once.Do(func() {
		sum := sha256.Sum256([]byte(abs))
		out := filepath.Join(BuildDir, filepath.Base(abs)+"-"+hex.EncodeToString(sum[:6])+".wasm")
		if b.err = os.MkdirAll(BuildDir, 0o755); b.err != nil {
			return
		}
		tmp, err := os.CreateTemp(BuildDir, ".build-*.wasm")
		if err != nil {
			b.err = err
			return
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", tmp.Name(), ".")
		cmd.Dir = abs
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, stderr.String())
			return
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			b.err = err
			return
		}
		b.path = out
	})
	return b.path, b.err
}

// ErrNoNode says node/npm are not installed.
var ErrNoNode = errors.New("plugintest: npm not found in PATH")

// BuildAssemblyScript builds the AssemblyScript plugin in dir with
// `npm ci` (when node_modules is missing) and `npm run build`, and returns
// dir/out. It returns ErrNoNode when npm is not installed.
func BuildAssemblyScript(dir, out string) (string, error) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", ErrNoNode
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("build plugin %s: %w", dir, err)
	}
	v, _ := builds.LoadOrStore(abs, &build{})
	b := v.(*build)
	b.once.Do(func() {
		run := func(args ...string) error {
			cmd := exec.Command(npm, args...)
			cmd.Dir = abs
			var output bytes.Buffer
			cmd.Stdout, cmd.Stderr = &output, &output
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("npm %v in %s: %w\n%s", args, abs, err, output.String())
			}
			return nil
		}
		if _, err := os.Stat(filepath.Join(abs, "node_modules", "assemblyscript")); err != nil {
			if b.err = run("ci", "--no-audit", "--no-fund"); b.err != nil {
				return
			}
		}
		if b.err = run("run", "build"); b.err != nil {
			return
		}
		b.path = filepath.Join(abs, out)
	})
	return b.path, b.err
}
