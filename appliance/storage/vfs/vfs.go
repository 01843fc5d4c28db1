// Package vfs is the filesystem seam of Eddy's storage engine.
//
// Every file operation of the storage packages goes through the FS and File
// interfaces defined here. Three implementations exist:
//
//   - OS, the real filesystem, with fdatasync, fallocate(FALLOC_FL_KEEP_SIZE)
//     and posix_fadvise;
//   - Mem, an in-memory filesystem that models what survives a power cut:
//     file contents survive only up to the last Sync, directory entries only
//     up to the last SyncDir of their directory. A Mem can be crashed at any
//     mutating step and cloned into the state a reboot would find;
//   - fault injection on Mem (ENOSPC, EIO on write and on sync) through an
//     injector hook, so error paths are tested without a broken disk.
//
// Writable files are opened in append mode: Write always extends the file,
// which is the only way segment and index files grow.
package vfs

import (
	"errors"
	"io"
	"io/fs"
	"path/filepath"
)

// File is an open file.
type File interface {
	io.Writer   // appends at the end of the file
	io.ReaderAt // positional reads, safe concurrently with Write
	io.Closer
	// Sync makes the file's data durable (fdatasync).
	Sync() error
	// Truncate changes the size of the file.
	Truncate(size int64) error
	// Size returns the current size of the file.
	Size() (int64, error)
}

// Preallocator is implemented by files that can reserve disk blocks ahead of
// writes without changing the visible size (fallocate with KEEP_SIZE).
type Preallocator interface {
	Preallocate(off, length int64) error
}

// Writebacker is implemented by files that can start writing a range of
// their dirty pages to the device without waiting for it
// (sync_file_range with SYNC_FILE_RANGE_WRITE). It makes nothing durable:
// a later Sync still does that, with less left to write.
type Writebacker interface {
	StartWriteback(off, length int64) error
}

// Advice is a posix_fadvise hint.
type Advice int

// The fadvise hints the storage engine uses.
const (
	AdviceNormal Advice = iota
	AdviceSequential
	AdviceDontNeed
	AdviceWillNeed
)

// Advisor is implemented by files that accept access-pattern hints.
type Advisor interface {
	Fadvise(off, length int64, advice Advice) error
}

// FS is a filesystem.
type FS interface {
	// Create creates or truncates name and opens it for reading and appending.
	Create(name string) (File, error)
	// OpenRW opens an existing file for reading and appending.
	OpenRW(name string) (File, error)
	// Open opens an existing file for reading.
	Open(name string) (File, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// RemoveAll removes a directory tree.
	RemoveAll(name string) error
	// Rename renames a file, replacing the target if it exists.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string) error
	// List returns the names of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat describes a file.
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the entries of dir durable (creates, renames, removes).
	SyncDir(dir string) error
}

// IsNotExist reports whether err says a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Preallocate reserves space for f when it supports it; otherwise it does
// nothing.
func Preallocate(f File, off, length int64) error {
	if p, ok := f.(Preallocator); ok {
		return p.Preallocate(off, length)
	}
	return nil
}

// StartWriteback starts writing f's dirty pages in [off, off+length) to
// the device when f supports it; otherwise it does nothing.
func StartWriteback(f File, off, length int64) error {
	if w, ok := f.(Writebacker); ok {
		return w.StartWriteback(off, length)
	}
	return nil
}

// Fadvise passes a hint to f when it supports it; otherwise it does nothing.
func Fadvise(f File, off, length int64, a Advice) error {
	if ad, ok := f.(Advisor); ok {
		return ad.Fadvise(off, length, a)
	}
	return nil
}

// WriteFileAtomic writes data to name durably and atomically: it writes a
// temporary file, syncs it, renames it over name and syncs the directory.
// A crash leaves either the old or the new content, never a mix.
func WriteFileAtomic(fsys FS, dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

// ReadFile reads a whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// ErrLocked is what Locker.Lock's error wraps when another holder has the
// lock.
var ErrLocked = errors.New("held by another process")

// Locker is implemented by filesystems that can take an exclusive lock on a
// file, held until the returned closer is closed.
type Locker interface {
	Lock(name string) (io.Closer, error)
}

// MkdirAllDurable creates dir and any missing parents, and syncs the parent
// of every directory it created, so the new directories survive a power
// cut.
func MkdirAllDurable(fsys FS, dir string) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := fsys.Stat(d); err == nil {
			break
		} else if !IsNotExist(err) {
			return err
		}
		missing = append(missing, d)
		if p := filepath.Dir(d); p == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := fsys.SyncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}
