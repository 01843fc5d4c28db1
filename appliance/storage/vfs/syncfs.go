package vfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FSSyncer is implemented by files whose whole filesystem can be made
// durable at once (syncfs(2)): the data and metadata of every file on it.
// One such sync can stand for the fdatasyncs of many files.
type FSSyncer interface {
	// FSID names the file's filesystem; files with equal IDs share a sync.
	// An error means the file cannot take part: sync it alone.
	FSID() (uint64, error)
	// SyncFS syncs the file's whole filesystem. Once it has failed, it
	// fails again on every later call: an error it reported may have
	// concerned any file on the filesystem, so nothing written there can
	// be trusted to be durable until the files are reopened by a restart.
	SyncFS() error
}

// ErrNoSyncFS is returned by FSID where syncfs cannot stand for fdatasync.
var ErrNoSyncFS = errors.New("vfs: no filesystem-wide sync here")

// fsHandle is one filesystem's syncfs handle: a directory on it, opened
// before any file of the filesystem was written through this package, so
// that every writeback error after that is reported by its next syncfs
// (the kernel reports an error to each open file once, on the first sync
// after it happened).
type fsHandle struct {
	dev  uint64
	refs int // open files using it (guarded by fsHandles)
	mu   sync.Mutex
	dir  *os.File
	err  error // sticky: the first failure
}

var fsHandles struct {
	sync.Mutex
	m map[uint64]*fsHandle
}

// syncfsReportsErrors is whether the kernel's syncfs returns writeback
// errors (Linux 5.8 and later); before that, it cannot replace fdatasync.
var syncfsReportsErrors = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8)
})

// kernelAtLeast reports whether a kernel release such as "6.1.0-13-amd64"
// is major.minor or later.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(leadingDigits(parts[1]))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

func leadingDigits(s string) string {
	for i, r := range s {
		if r < '0' || r > '9' {
			return s[:i]
		}
	}
	return s
}

// handleFor returns the syncfs handle of f's filesystem, opening it on the
// first file of that filesystem; nil when there is none to be had. The
// handle lives while files use it (release), so it never keeps a
// filesystem from being unmounted once its files are closed; a closed
// file has had its data synced by its owner, so no error the handle could
// still report concerns it.
func handleFor(f *os.File) *fsHandle {
	if !syncfsReportsErrors() {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return nil
	}
	dev := uint64(st.Dev)
	fsHandles.Lock()
	defer fsHandles.Unlock()
	if h := fsHandles.m[dev]; h != nil {
		h.refs++
		return h
	}
	dir, err := os.Open(filepath.Dir(f.Name()))
	if err != nil {
		return nil
	}
	if fsHandles.m == nil {
		fsHandles.m = map[uint64]*fsHandle{}
	}
	h := &fsHandle{dev: dev, dir: dir, refs: 1}
	fsHandles.m[dev] = h
	return h
}

// release drops a file's use of h, closing it after the last.
func (h *fsHandle) release() {
	fsHandles.Lock()
	defer fsHandles.Unlock()
	if h.refs--; h.refs > 0 {
		return
	}
	delete(fsHandles.m, h.dev)
	h.mu.Lock()
	h.dir.Close()
	h.mu.Unlock()
}

// Close closes the file and drops its use of the filesystem's syncfs
// handle.
func (f osFile) Close() error {
	err := f.File.Close()
	if f.fsh != nil && !errors.Is(err, os.ErrClosed) {
		f.fsh.release()
	}
	return err
}

// FSID implements FSSyncer.
func (f osFile) FSID() (uint64, error) {
	if f.fsh == nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), ErrNoSyncFS)
	}
	return f.fsh.dev, nil
}

// SyncFS implements FSSyncer.
func (f osFile) SyncFS() error {
	h := f.fsh
	if h == nil {
		return fmt.Errorf("%s: %w", f.Name(), ErrNoSyncFS)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return h.err
	}
	for {
		err := unix.Syncfs(int(h.dir.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			h.err = &os.PathError{Op: "syncfs", Path: h.dir.Name(), Err: err}
		}
		return h.err
	}
}
