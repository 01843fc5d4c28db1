package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// ErrCrashed is returned by every operation on a Mem after its crash point.
var ErrCrashed = errors.New("vfs: simulated crash")

// OpKind names a mutating filesystem operation.
type OpKind int

// The mutating operations a Mem counts, crashes at and injects faults
// into, and OpOpen and OpWriteback, which only Faulty reports (opening an
// existing file; starting a file's writeback).
const (
	OpWrite OpKind = iota
	OpSync
	OpTruncate
	OpCreate
	OpRename
	OpRemove
	OpSyncDir
	OpMkdir
	OpOpen
	OpWriteback
)

func (k OpKind) String() string {
	return [...]string{"write", "sync", "truncate", "create", "rename", "remove", "syncdir", "mkdir", "open", "writeback"}[k]
}

// Op describes one mutating operation, as passed to an Injector.
type Op struct {
	Kind OpKind
	Path string
	Len  int   // bytes, for writes and writebacks
	Off  int64 // where a writeback starts
}

// Injector decides whether an operation fails; a nil result lets it run.
type Injector func(Op) error

// TailMode says what a simulated power cut leaves of data written but not
// synced.
type TailMode int

const (
	// TailDrop keeps exactly the synced content.
	TailDrop TailMode = iota
	// TailPrefix keeps a random prefix of the unsynced appends, as when
	// some pages were written back before the cut.
	TailPrefix
	// TailZeros extends the file with a random run of zero bytes, as when
	// the size reached the disk but the data did not.
	TailZeros
	// TailGarbage extends the file with random bytes.
	TailGarbage
	// TailSectors keeps the whole unsynced length but only a random subset
	// of its 64-byte sectors; the others read back as zeros, as when the
	// disk wrote pages out of order.
	TailSectors
)

// sectorSize is the granularity of TailSectors.
const sectorSize = 64

// Mem is an in-memory filesystem that models durability. See the package
// documentation.
type Mem struct {
	mu       sync.Mutex
	cur      map[string]*memNode // live namespace
	dur      map[string]*memNode // namespace as of the last SyncDir of each directory
	ops      int64
	crashAt  int64
	crashed  bool
	inject   Injector
	capacity int64 // bytes; 0 = unlimited
	used     int64
	locks    map[string]bool
}

type memNode struct {
	dir       bool
	data      []byte
	durable   []byte
	dirtyFrom int // lowest offset changed since the last sync
	modTime   time.Time
}

// NewMem returns an empty in-memory filesystem with a durable root "/".
func NewMem() *Mem {
	root := &memNode{dir: true}
	return &Mem{
		cur: map[string]*memNode{"/": root},
		dur: map[string]*memNode{"/": root},
	}
}

// SetCrashAfter makes the n-th mutating operation from now the crash point:
// it and everything after it fail with ErrCrashed. n <= 0 disables it.
func (m *Mem) SetCrashAfter(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n <= 0 {
		m.crashAt = 0
		return
	}
	m.crashAt = m.ops + n
}

// Ops returns how many mutating operations have run so far.
func (m *Mem) Ops() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// Crashed reports whether the crash point has been reached.
func (m *Mem) Crashed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashed
}

// SetInjector installs a fault injector (nil removes it).
func (m *Mem) SetInjector(in Injector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inject = in
}

// SetCapacity limits the bytes all files may hold; writes beyond it fail
// with ENOSPC after writing what fits. 0 means unlimited.
func (m *Mem) SetCapacity(bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.capacity = bytes
}

// Used returns the bytes all files hold.
func (m *Mem) Used() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// CrashClone returns the filesystem a reboot after a power cut would find:
// only synced directory entries, and for each file its synced content plus
// whatever mode leaves of the unsynced tail. rng drives the random choices.
func (m *Mem) CrashClone(mode TailMode, rng *rand.Rand) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem()
	nodes := map[*memNode]*memNode{}
	names := make([]string, 0, len(m.dur))
	for name := range m.dur {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic use of rng
	for _, name := range names {
		if name == "/" {
			continue
		}
		// An entry survives only if its whole path survives.
		if !durablePath(m.dur, name) {
			continue
		}
		n := m.dur[name]
		cn, ok := nodes[n]
		if !ok {
			cn = &memNode{dir: n.dir, modTime: n.modTime}
			if !n.dir {
				cn.data = append([]byte(nil), n.durable...)
				cn.data = append(cn.data, tail(n, mode, rng)...)
				cn.durable = append([]byte(nil), cn.data...)
				cn.dirtyFrom = len(cn.data)
				c.used += int64(len(cn.data))
			}
			nodes[n] = cn
		}
		c.cur[name] = cn
		c.dur[name] = cn
	}
	return c
}

func durablePath(dur map[string]*memNode, name string) bool {
	for p := filepath.Dir(name); p != "/"; p = filepath.Dir(p) {
		if _, ok := dur[p]; !ok {
			return false
		}
	}
	return true
}

// tail computes what survives of a node's unsynced bytes.
func tail(n *memNode, mode TailMode, rng *rand.Rand) []byte {
	if mode == TailDrop || rng == nil {
		return nil
	}
	// Only an append-only unsynced region can leave a tail; a truncation
	// below the synced size has no well-defined partial state.
	if n.dirtyFrom < len(n.durable) || len(n.data) <= len(n.durable) {
		return nil
	}
	unsynced := n.data[len(n.durable):]
	k := rng.IntN(len(unsynced) + 1)
	switch mode {
	case TailPrefix:
		return append([]byte(nil), unsynced[:k]...)
	case TailZeros:
		return make([]byte, k)
	case TailGarbage:
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	case TailSectors:
		b := append([]byte(nil), unsynced...)
		for i := 0; i < len(b); i += sectorSize {
			if rng.IntN(2) == 0 {
				clear(b[i:min(i+sectorSize, len(b))])
			}
		}
		return b
	}
	return nil
}

// begin counts a mutating op and applies the crash point and the injector.
// It is called with m.mu held.
func (m *Mem) beginLocked(op Op) error {
	if m.crashed {
		return ErrCrashed
	}
	m.ops++
	if m.crashAt > 0 && m.ops >= m.crashAt {
		m.crashed = true
		return ErrCrashed
	}
	if m.inject != nil {
		if err := m.inject(op); err != nil {
			return err
		}
	}
	return nil
}

func clean(name string) string {
	if !filepath.IsAbs(name) {
		name = "/" + name
	}
	return filepath.Clean(name)
}

func pathErr(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (m *Mem) parentOKLocked(name string) error {
	p, ok := m.cur[filepath.Dir(name)]
	if !ok {
		return fs.ErrNotExist
	}
	if !p.dir {
		return syscall.ENOTDIR
	}
	return nil
}

// Create implements FS.
func (m *Mem) Create(name string) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(Op{Kind: OpCreate, Path: name}); err != nil {
		return nil, pathErr("create", name, err)
	}
	if err := m.parentOKLocked(name); err != nil {
		return nil, pathErr("create", name, err)
	}
	if n, ok := m.cur[name]; ok {
		if n.dir {
			return nil, pathErr("create", name, syscall.EISDIR)
		}
		m.used -= int64(len(n.data))
		n.data = n.data[:0]
		n.dirtyFrom = 0
		n.modTime = time.Now()
		return &memFile{m: m, n: n, name: name}, nil
	}
	n := &memNode{modTime: time.Now()}
	m.cur[name] = n
	return &memFile{m: m, n: n, name: name}, nil
}

// OpenRW implements FS.
func (m *Mem) OpenRW(name string) (File, error) { return m.open(name, false) }

// Open implements FS.
func (m *Mem) Open(name string) (File, error) { return m.open(name, true) }

func (m *Mem) open(name string, ro bool) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, pathErr("open", name, ErrCrashed)
	}
	n, ok := m.cur[name]
	if !ok {
		return nil, pathErr("open", name, fs.ErrNotExist)
	}
	if n.dir && !ro {
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	return &memFile{m: m, n: n, name: name, ro: ro}, nil
}

// Remove implements FS.
func (m *Mem) Remove(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(Op{Kind: OpRemove, Path: name}); err != nil {
		return pathErr("remove", name, err)
	}
	n, ok := m.cur[name]
	if !ok {
		return pathErr("remove", name, fs.ErrNotExist)
	}
	if n.dir {
		for p := range m.cur {
			if filepath.Dir(p) == name && p != name {
				return pathErr("remove", name, syscall.ENOTEMPTY)
			}
		}
	}
	m.used -= int64(len(n.data))
	delete(m.cur, name)
	return nil
}

// RemoveAll implements FS.
func (m *Mem) RemoveAll(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(Op{Kind: OpRemove, Path: name}); err != nil {
		return pathErr("removeall", name, err)
	}
	prefix := name + "/"
	for p, n := range m.cur {
		if p == name || (len(p) > len(prefix) && p[:len(prefix)] == prefix) {
			m.used -= int64(len(n.data))
			delete(m.cur, p)
		}
	}
	return nil
}

// Rename implements FS.
func (m *Mem) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(Op{Kind: OpRename, Path: oldname}); err != nil {
		return pathErr("rename", oldname, err)
	}
	n, ok := m.cur[oldname]
	if !ok {
		return pathErr("rename", oldname, fs.ErrNotExist)
	}
	if err := m.parentOKLocked(newname); err != nil {
		return pathErr("rename", newname, err)
	}
	if n.dir {
		return pathErr("rename", oldname, syscall.EISDIR) // not needed by the engine
	}
	if old, ok := m.cur[newname]; ok {
		if old.dir {
			return pathErr("rename", newname, syscall.EISDIR)
		}
		m.used -= int64(len(old.data))
	}
	m.cur[newname] = n
	delete(m.cur, oldname)
	return nil
}

// MkdirAll implements FS.
func (m *Mem) MkdirAll(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		n, ok := m.cur[p]
		if ok {
			if !n.dir {
				return pathErr("mkdir", p, syscall.ENOTDIR)
			}
			break
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := m.beginLocked(Op{Kind: OpMkdir, Path: missing[i]}); err != nil {
			return pathErr("mkdir", missing[i], err)
		}
		m.cur[missing[i]] = &memNode{dir: true, modTime: time.Now()}
	}
	return nil
}

// List implements FS.
func (m *Mem) List(dir string) ([]string, error) {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, pathErr("list", dir, ErrCrashed)
	}
	n, ok := m.cur[dir]
	if !ok {
		return nil, pathErr("list", dir, fs.ErrNotExist)
	}
	if !n.dir {
		return nil, pathErr("list", dir, syscall.ENOTDIR)
	}
	var names []string
	for p := range m.cur {
		if p != dir && filepath.Dir(p) == dir {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Stat implements FS.
func (m *Mem) Stat(name string) (fs.FileInfo, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, pathErr("stat", name, ErrCrashed)
	}
	n, ok := m.cur[name]
	if !ok {
		return nil, pathErr("stat", name, fs.ErrNotExist)
	}
	return memInfo{name: filepath.Base(name), size: int64(len(n.data)), dir: n.dir, mod: n.modTime}, nil
}

// SyncDir implements FS.
func (m *Mem) SyncDir(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(Op{Kind: OpSyncDir, Path: dir}); err != nil {
		return pathErr("syncdir", dir, err)
	}
	if _, ok := m.cur[dir]; !ok {
		return pathErr("syncdir", dir, fs.ErrNotExist)
	}
	for p := range m.dur {
		if p != dir && filepath.Dir(p) == dir {
			if _, ok := m.cur[p]; !ok {
				delete(m.dur, p)
			}
		}
	}
	for p, n := range m.cur {
		if p != dir && filepath.Dir(p) == dir {
			m.dur[p] = n
		}
	}
	return nil
}

type memFile struct {
	m      *Mem
	n      *memNode
	name   string
	ro     bool
	closed bool
}

func (f *memFile) Write(p []byte) (int, error) {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return 0, pathErr("write", f.name, fs.ErrClosed)
	}
	if f.ro {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if err := m.beginLocked(Op{Kind: OpWrite, Path: f.name, Len: len(p)}); err != nil {
		if errors.Is(err, ErrCrashed) {
			// The write that hits the crash point may have reached the
			// page cache; the crash clone decides what survives of it.
			f.n.data = append(f.n.data, p...)
		}
		return 0, pathErr("write", f.name, err)
	}
	n := len(p)
	var err error
	if m.capacity > 0 && m.used+int64(n) > m.capacity {
		n = int(max(m.capacity-m.used, 0))
		err = pathErr("write", f.name, syscall.ENOSPC)
	}
	f.n.data = append(f.n.data, p[:n]...)
	f.n.modTime = time.Now()
	m.used += int64(n)
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return 0, pathErr("read", f.name, fs.ErrClosed)
	}
	if m.crashed {
		return 0, pathErr("read", f.name, ErrCrashed)
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, fs.ErrClosed)
	}
	f.closed = true
	return nil
}

func (f *memFile) Sync() error {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return pathErr("sync", f.name, fs.ErrClosed)
	}
	n := f.n
	if err := m.beginLocked(Op{Kind: OpSync, Path: f.name}); err != nil {
		if !errors.Is(err, ErrCrashed) {
			// Like Linux after a failed writeback: the dirty pages are
			// dropped and marked clean, so the bytes never reach the
			// disk and a later sync reports success over a hole.
			n.dirtyFrom = len(n.data)
		}
		return pathErr("sync", f.name, err)
	}
	from := min(n.dirtyFrom, len(n.data))
	if from > len(n.durable) {
		// Bytes lost to an earlier failed sync read back as zeros.
		n.durable = append(n.durable, make([]byte, from-len(n.durable))...)
	}
	n.durable = append(n.durable[:from], n.data[from:]...)
	n.dirtyFrom = len(n.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return pathErr("truncate", f.name, fs.ErrClosed)
	}
	if err := m.beginLocked(Op{Kind: OpTruncate, Path: f.name}); err != nil {
		return pathErr("truncate", f.name, err)
	}
	n := f.n
	old := int64(len(n.data))
	if size < old {
		n.data = n.data[:size]
		n.dirtyFrom = min(n.dirtyFrom, int(size))
	} else {
		n.data = append(n.data, make([]byte, size-old)...)
		n.dirtyFrom = min(n.dirtyFrom, int(old))
	}
	m.used += size - old
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return 0, pathErr("stat", f.name, fs.ErrClosed)
	}
	return int64(len(f.n.data)), nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
	mod  time.Time
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}

// String describes the filesystem's size, for test failure messages.
func (m *Mem) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("mem fs: %d entries, %d bytes, %d ops", len(m.cur), m.used, m.ops)
}

// Lock implements Locker within the process.
func (m *Mem) Lock(name string) (io.Closer, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks == nil {
		m.locks = map[string]bool{}
	}
	if m.locks[name] {
		return nil, fmt.Errorf("lock %s: %w", name, ErrLocked)
	}
	m.locks[name] = true
	return memLock{m, name}, nil
}

type memLock struct {
	m    *Mem
	name string
}

func (l memLock) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	delete(l.m.locks, l.name)
	return nil
}
