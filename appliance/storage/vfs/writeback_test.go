package vfs

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestStartWritebackOnRealFiles(t *testing.T) {
	name := filepath.Join(t.TempDir(), "seg.log")
	f, err := OS.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := StartWriteback(f, 0, 1<<20); err != nil {
		t.Fatalf("start writeback of a file's first MiB: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = StartWriteback(f, 0, 4096)
	if err == nil || !strings.Contains(err.Error(), "sync_file_range") || !strings.Contains(err.Error(), name) {
		t.Fatalf("writeback of a closed file: %v; want an error naming sync_file_range and %s", err, name)
	}
	// Files without it (the in-memory ones) take the hint as done.
	m := NewMem()
	mf, err := m.Create("/x")
	if err != nil {
		t.Fatal(err)
	}
	if err := StartWriteback(mf, 0, 4096); err != nil {
		t.Fatalf("in-memory file: %v", err)
	}
}
