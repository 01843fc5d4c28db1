package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"sync/atomic"
)

// Faulty wraps a filesystem (normally OS) and passes every operation to
// an injector first, which may fail it or hold it: real files with the
// faults of a failing disk (ENOSPC, EIO, a hung fdatasync). Reads, Stat
// and List are not injected; opening a file is (OpOpen).
type Faulty struct {
	fs     FS
	inject atomic.Pointer[Injector]
}

// NewFaulty wraps fsys with no injector.
func NewFaulty(fsys FS) *Faulty { return &Faulty{fs: fsys} }

// SetInjector installs the injector (nil removes it).
func (f *Faulty) SetInjector(in Injector) {
	if in == nil {
		f.inject.Store(nil)
		return
	}
	f.inject.Store(&in)
}

func (f *Faulty) check(kind OpKind, path string, n int) error {
	return f.checkOp(Op{Kind: kind, Path: path, Len: n})
}

func (f *Faulty) checkOp(op Op) error {
	if in := f.inject.Load(); in != nil {
		return (*in)(op)
	}
	return nil
}

func (f *Faulty) wrap(name string, file File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, fs: f, name: name}, nil
}

// Create implements FS.
func (f *Faulty) Create(name string) (File, error) {
	if err := f.check(OpCreate, name, 0); err != nil {
		return nil, &fs.PathError{Op: "create", Path: name, Err: err}
	}
	file, err := f.fs.Create(name)
	return f.wrap(name, file, err)
}

// OpenRW implements FS.
func (f *Faulty) OpenRW(name string) (File, error) {
	if err := f.check(OpOpen, name, 0); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	file, err := f.fs.OpenRW(name)
	return f.wrap(name, file, err)
}

// Open implements FS.
func (f *Faulty) Open(name string) (File, error) {
	if err := f.check(OpOpen, name, 0); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	file, err := f.fs.Open(name)
	return f.wrap(name, file, err)
}

// Remove implements FS.
func (f *Faulty) Remove(name string) error {
	if err := f.check(OpRemove, name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return f.fs.Remove(name)
}

// RemoveAll implements FS.
func (f *Faulty) RemoveAll(name string) error {
	if err := f.check(OpRemove, name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return f.fs.RemoveAll(name)
}

// Rename implements FS.
func (f *Faulty) Rename(oldname, newname string) error {
	if err := f.check(OpRename, newname, 0); err != nil {
		return &fs.PathError{Op: "rename", Path: oldname, Err: err}
	}
	return f.fs.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (f *Faulty) MkdirAll(dir string) error {
	if err := f.check(OpMkdir, dir, 0); err != nil {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return f.fs.MkdirAll(dir)
}

// List implements FS.
func (f *Faulty) List(dir string) ([]string, error) { return f.fs.List(dir) }

// Stat implements FS.
func (f *Faulty) Stat(name string) (fs.FileInfo, error) { return f.fs.Stat(name) }

// SyncDir implements FS.
func (f *Faulty) SyncDir(dir string) error {
	if err := f.check(OpSyncDir, dir, 0); err != nil {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: err}
	}
	return f.fs.SyncDir(dir)
}

// Lock implements Locker when the wrapped filesystem does.
func (f *Faulty) Lock(name string) (io.Closer, error) {
	if l, ok := f.fs.(Locker); ok {
		return l.Lock(name)
	}
	return io.NopCloser(nil), nil
}

type faultyFile struct {
	File
	fs   *Faulty
	name string
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if err := f.fs.check(OpWrite, f.name, len(p)); err != nil {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: err}
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	if err := f.fs.check(OpSync, f.name, 0); err != nil {
		return &fs.PathError{Op: "sync", Path: f.name, Err: err}
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	if err := f.fs.check(OpTruncate, f.name, 0); err != nil {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: err}
	}
	return f.File.Truncate(size)
}

func (f *faultyFile) Preallocate(off, length int64) error { return Preallocate(f.File, off, length) }

func (f *faultyFile) StartWriteback(off, length int64) error {
	if err := f.fs.checkOp(Op{Kind: OpWriteback, Path: f.name, Len: int(length), Off: off}); err != nil {
		return &fs.PathError{Op: "sync_file_range", Path: f.name, Err: err}
	}
	return StartWriteback(f.File, off, length)
}

func (f *faultyFile) Fadvise(off, length int64, a Advice) error {
	return Fadvise(f.File, off, length, a)
}

// FSID implements FSSyncer when the wrapped file does.
func (f *faultyFile) FSID() (uint64, error) {
	if s, ok := f.File.(FSSyncer); ok {
		return s.FSID()
	}
	return 0, fmt.Errorf("%s: %w", f.name, ErrNoSyncFS)
}

// SyncFS implements FSSyncer; a sync fault injected for this file fails
// this call as it fails Sync (the wrapped filesystem's later syncs are
// untouched: no write was really lost).
func (f *faultyFile) SyncFS() error {
	if err := f.fs.check(OpSync, f.name, 0); err != nil {
		return &fs.PathError{Op: "syncfs", Path: f.name, Err: err}
	}
	if s, ok := f.File.(FSSyncer); ok {
		return s.SyncFS()
	}
	return fmt.Errorf("%s: %w", f.name, ErrNoSyncFS)
}
