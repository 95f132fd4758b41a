package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecondOpenFailsUntilClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	first, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(path, "state")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "in use by another edgefleet process") || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second open: got %v, want a clear in-use error naming the pid", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("failed open touched existing state")
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}

func TestUnwritableDirIsAClearError(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permission bits; use a path under a regular file instead.
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(filepath.Join(file, "data"))
		if err == nil || !strings.Contains(err.Error(), "--data-dir") {
			t.Fatalf("got %v, want an error that tells the user to pick another --data-dir", err)
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(dir, "data"))
	if err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("got %v, want an error that tells the user to pick another --data-dir", err)
	}
}
