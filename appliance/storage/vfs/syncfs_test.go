package vfs

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestKernelAtLeast(t *testing.T) {
	for _, tt := range []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v669", true}, {"5.8.0", true}, {"5.10.0-28-amd64", true},
		{"5.7.19", false}, {"4.19.0-26-amd64", false}, {"5", false}, {"", false}, {"x.y", false},
	} {
		if got := kernelAtLeast(tt.release, 5, 8); got != tt.want {
			t.Errorf("kernelAtLeast(%q, 5, 8) = %v, want %v", tt.release, got, tt.want)
		}
	}
}

// TestSyncFSOnRealFiles: files of one filesystem share an ID and a
// working syncfs (on a kernel whose syncfs reports writeback errors; on
// an older one, none is offered); a file opened read-only has none.
func TestSyncFSOnRealFiles(t *testing.T) {
	dir := t.TempDir()
	var ids []uint64
	for _, name := range []string{"a", "b"} {
		f, err := OS.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
		s, ok := f.(FSSyncer)
		if !ok {
			t.Fatal("an OS file has no filesystem sync")
		}
		id, err := s.FSID()
		if !syncfsReportsErrors() {
			if !errors.Is(err, ErrNoSyncFS) {
				t.Fatalf("a kernel before 5.8 offers a filesystem sync: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if err := s.SyncFS(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("two files of one directory on filesystems %d and %d", ids[0], ids[1])
	}
	r, err := OS.Open(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.(FSSyncer).FSID(); err == nil {
		t.Fatal("a read-only file offers a filesystem sync")
	}
}
