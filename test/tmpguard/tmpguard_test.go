package tmpguard

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A folder whose test process is gone is swept with what it holds; the
// folder of a running test process is left alone.
func TestSweepDead(t *testing.T) {
	base := t.TempDir()
	start, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(base, prefix+"1")
	dead := filepath.Join(base, prefix+"2")
	foreign := filepath.Join(base, prefix+"3") // no marker: not the guard's
	for dir, mark := range map[string]string{
		live: strconv.Itoa(os.Getpid()) + " " + start,
		// Our pid with another start time: a dead process whose pid was reused.
		dead:    strconv.Itoa(os.Getpid()) + " 1",
		foreign: "",
	} {
		if err := os.MkdirAll(filepath.Join(dir, "sub", "ro"), 0o755); err != nil {
			t.Fatal(err)
		}
		if mark != "" {
			if err := os.WriteFile(filepath.Join(dir, marker), []byte(mark+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "ro", "f"), []byte("x"), 0o400); err != nil {
			t.Fatal(err)
		}
		// A read-only folder stops a plain RemoveAll.
		if err := os.Chmod(filepath.Join(dir, "sub", "ro"), 0o500); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{live, foreign} {
			_ = os.Chmod(filepath.Join(d, "sub", "ro"), 0o700)
		}
	})
	msgs := SweepDead(base)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead run's folder is still there (%v); sweep said %q", err, msgs)
	}
	for _, d := range []string{live, foreign} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	if len(msgs) != 1 || !strings.Contains(msgs[0], dead) {
		t.Errorf("sweep reported %q, want one line naming %s", msgs, dead)
	}
}

// Check names what is left — files, processes, mounts — and Remove gets rid
// of all of it.
func TestCheckAndRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), prefix+"9")
	if err := os.MkdirAll(filepath.Join(dir, "lab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, marker), []byte("1 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Check(dir); len(got) != 1 || !strings.Contains(got[0], filepath.Join(dir, "lab")) {
		t.Fatalf("Check = %q, want the one folder left (not the marker)", got)
	}
	sleep := exec.Command("sleep", "300")
	sleep.Dir = filepath.Join(dir, "lab")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = sleep.Wait(); close(done) }()
	t.Cleanup(func() { _ = sleep.Process.Kill(); <-done })
	mounted := false
	if os.Geteuid() == 0 {
		mnt := filepath.Join(dir, "lab", "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
			t.Logf("cannot mount a tmpfs here (%v): the mount case is not checked", err)
		} else {
			mounted = true
			t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
		}
	}
	got := strings.Join(Check(dir), "\n")
	if !strings.Contains(got, "process still running: pid "+strconv.Itoa(sleep.Process.Pid)) {
		t.Errorf("Check does not name the process running in the folder:\n%s", got)
	}
	if mounted && !strings.Contains(got, "still mounted: "+filepath.Join(dir, "lab", "mnt")) {
		t.Errorf("Check does not name the mount:\n%s", got)
	}
	if msgs := Remove(dir); len(msgs) > 0 {
		t.Errorf("Remove: %q", msgs)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the folder is still there: %v", err)
	}
	<-done // Remove killed it
}

// A folder that already has the guard's name is never reused or removed:
// it may be anyone's.
func TestCreateLeavesTakenNames(t *testing.T) {
	base := t.TempDir()
	taken := filepath.Join(base, prefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(filepath.Join(taken, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := create(base)
	if err != nil {
		t.Fatal(err)
	}
	if dir == taken {
		t.Fatalf("create reused %s", taken)
	}
	if _, err := os.Stat(filepath.Join(taken, "keep")); err != nil {
		t.Errorf("the taken folder was touched: %v", err)
	}
	if got := Check(dir); len(got) != 0 {
		t.Errorf("a fresh folder is not empty to Check: %q", got)
	}
}
