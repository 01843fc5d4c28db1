package vfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func readAll(t *testing.T, fsys FS, name string) []byte {
	t.Helper()
	b, err := ReadFile(fsys, name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func write(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestCrashKeepsOnlySyncedState(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d")
	m.SyncDir("/")
	f, _ := m.Create("/d/a")
	write(t, f, "hello ")
	f.Sync()
	write(t, f, "world")
	// The file's entry is not durable until its directory is synced.
	if _, err := m.CrashClone(TailDrop, nil).Stat("/d/a"); !IsNotExist(err) {
		t.Fatalf("unsynced directory entry survived: %v", err)
	}
	m.SyncDir("/d")
	c := m.CrashClone(TailDrop, nil)
	if got := readAll(t, c, "/d/a"); string(got) != "hello " {
		t.Fatalf("after crash: %q, want the synced prefix", got)
	}
	// A rename is durable only after its directory sync.
	m.Rename("/d/a", "/d/b")
	c = m.CrashClone(TailDrop, nil)
	if _, err := c.Stat("/d/a"); err != nil {
		t.Fatal("an unsynced rename took effect")
	}
	m.SyncDir("/d")
	c = m.CrashClone(TailDrop, nil)
	if _, err := c.Stat("/d/a"); !IsNotExist(err) {
		t.Fatal("the synced rename did not take effect")
	}
	if got := readAll(t, c, "/d/b"); string(got) != "hello " {
		t.Fatalf("renamed file: %q", got)
	}
}

func TestTailModes(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d")
	m.SyncDir("/")
	f, _ := m.Create("/d/a")
	m.SyncDir("/d")
	write(t, f, "durable|")
	f.Sync()
	tail := bytes.Repeat([]byte("U"), 1000)
	f.Write(tail)
	rng := rand.New(rand.NewPCG(1, 2))
	for mode, check := range map[TailMode]func([]byte) bool{
		TailDrop:    func(b []byte) bool { return len(b) == 0 },
		TailPrefix:  func(b []byte) bool { return bytes.HasPrefix(tail, b) },
		TailZeros:   func(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 },
		TailGarbage: func(b []byte) bool { return len(b) <= len(tail) },
		TailSectors: func(b []byte) bool {
			return len(b) == len(tail) && bytes.Contains(b, make([]byte, sectorSize)) && bytes.Contains(b, []byte("UUUU"))
		},
	} {
		got := readAll(t, m.CrashClone(mode, rng), "/d/a")
		if !bytes.HasPrefix(got, []byte("durable|")) || !check(got[8:]) {
			t.Errorf("tail mode %d left %q", mode, got)
		}
	}
}

func TestCrashPointAndFaults(t *testing.T) {
	m := NewMem()
	m.SetCrashAfter(3)
	m.MkdirAll("/d") // op 1
	f, _ := m.Create("/d/a")
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) { // op 3
		t.Fatalf("crash point: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrCrashed) || !m.Crashed() {
		t.Fatalf("after the crash: %v", err)
	}

	m = NewMem()
	m.MkdirAll("/d")
	f, _ = m.Create("/d/a")
	m.SetInjector(func(op Op) error {
		if op.Kind == OpSync {
			return syscall.EIO
		}
		return nil
	})
	write(t, f, "lost")
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("injected EIO: %v", err)
	}
	m.SetInjector(nil)
	write(t, f, "later")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	m.SyncDir("/")
	m.SyncDir("/d")
	// Like Linux: the pages of the failed sync never reach the disk, and
	// the later sync "succeeds" over a hole.
	if got := readAll(t, m.CrashClone(TailDrop, nil), "/d/a"); string(got) != "\x00\x00\x00\x00later" {
		t.Fatalf("after a failed then a good sync: %q", got)
	}

	m = NewMem()
	m.MkdirAll("/d")
	m.SetCapacity(10)
	f, _ = m.Create("/d/a")
	n, err := f.Write([]byte("0123456789abc"))
	if n != 10 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write over capacity: %d, %v", n, err)
	}
	buf := make([]byte, 20)
	if n, err := f.ReadAt(buf, 0); n != 10 || err != io.EOF {
		t.Fatalf("read back: %d %v", n, err)
	}
}

func TestLock(t *testing.T) {
	m := NewMem()
	l, err := m.Lock("/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock("/x"); err == nil {
		t.Fatal("second lock granted")
	}
	l.Close()
	if _, err := m.Lock("/x"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ol, err := OS.(Locker).Lock(dir + "/lock")
	if err != nil {
		t.Fatal(err)
	}
	defer ol.Close()
	if _, err := OS.(Locker).Lock(dir + "/lock"); err == nil {
		t.Fatal("second flock granted")
	}
}

func TestOSFile(t *testing.T) {
	dir := t.TempDir()
	f, err := OS.Create(dir + "/a")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Preallocate(f, 0, 1<<20); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	write(t, f, "abc")
	if sz, _ := f.Size(); sz != 3 {
		t.Fatalf("size %d after preallocation with KEEP_SIZE and a 3-byte write", sz)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := Fadvise(f, 0, 0, AdviceDontNeed); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(OS, dir, "cp", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, OS, dir+"/cp"); string(got) != "v1" {
		t.Fatalf("atomic write: %q", got)
	}
}

// TestFaultyInjectsIntoRealFiles: the injector sees each operation on real
// files and its error comes back wrapped with the path; without it the
// operations go through.
func TestFaultyInjectsIntoRealFiles(t *testing.T) {
	dir := t.TempDir()
	f := NewFaulty(OS)
	var seen []OpKind
	f.SetInjector(func(op Op) error {
		seen = append(seen, op.Kind)
		if op.Kind == OpSync {
			return syscall.ENOSPC
		}
		return nil
	})
	file, err := f.Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := file.Sync(); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(dir, "a")) {
		t.Fatalf("sync: %v", err)
	}
	file.Close()
	if want := []OpKind{OpCreate, OpWrite, OpSync}; !slices.Equal(seen, want) {
		t.Fatalf("ops %v, want %v", seen, want)
	}
	f.SetInjector(nil)
	if err := WriteFileAtomic(f, dir, "b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(f, filepath.Join(dir, "b")); err != nil || string(got) != "x" {
		t.Fatalf("read back %q %v", got, err)
	}
}
