// Package datadir prepares the directory that holds all of an embedded
// installation's state and guards it with an exclusive lock, so two processes
// never run one etcd or one CA.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const lockFile = "edgefleet.lock"

// Dir is a locked data directory.
type Dir struct {
	Path string
	lock *os.File
}

// Open creates path if needed, checks that it is writable and takes its lock.
// It fails at once, without touching anything else in the directory, when
// another process holds the lock.
func Open(path string) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s cannot be created: %w (choose another --data-dir or fix its permissions)", abs, err)
	}
	f, err := os.OpenFile(filepath.Join(abs, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s is not writable: %w (choose another --data-dir or fix its permissions)", abs, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readPID(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another edgefleet process%s: stop it first, or pass a different --data-dir", abs, holder)
		}
		return nil, fmt.Errorf("locking data dir %s: %w", abs, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Dir{Path: abs, lock: f}, nil
}

// Join returns a path inside the data directory.
func (d *Dir) Join(elem ...string) string {
	return filepath.Join(append([]string{d.Path}, elem...)...)
}

// Close releases the lock. The lock file stays; the kernel drops the lock if
// the process dies, so a crash never leaves the directory locked.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

func readPID(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid := strings.TrimSpace(string(buf[:n]))
	if pid == "" {
		return ""
	}
	return " (pid " + pid + ")"
}
