// Package tmpguard makes temporary files that tests (or the programs they
// start) leave behind fail the test run. Main points TMPDIR at a fresh
// folder for the test binary and everything it starts, runs the tests and
// then fails if anything is left in that folder — files, mounts, or
// processes still running from it — listing what, before removing it.
//
// A run that dies before its cleanups (a panic, the -timeout, SIGKILL)
// cannot clean up after itself: the next run of any package using Main
// removes such folders of dead runs first (stopping their processes and
// unmounting their mounts), so a crashed run costs disk only until then.
package tmpguard

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/mountinfo"
)

// marker names the test process that owns a guarded folder: "<pid>
// <start time>" (the start time tells a reused pid apart).
const marker = ".tmpguard"

// prefix of the guarded folders ("ef" and the pid). Short on purpose: the
// guard adds its length to every temporary path, and machine roots hold
// unix sockets, whose paths must stay under 108 bytes (a kubelet under
// t.TempDir of TestKubeDistro already needs 94).
const prefix = "ef"

// Main runs m with TMPDIR pointing at a fresh folder and returns the exit
// code: a failure when the tests passed but left something behind. Use it
// as `func TestMain(m *testing.M) { os.Exit(tmpguard.Main(m)) }`.
func Main(m *testing.M) int {
	base := os.TempDir()
	for _, msg := range SweepDead(base) {
		fmt.Fprintln(os.Stderr, "tmpguard:", msg)
	}
	dir, err := create(base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tmpguard:", err)
		return 1
	}
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	os.Setenv("TMPDIR", base)
	runExitHooks()
	// A process told to stop in a test's cleanup may take a moment to exit
	// and remove its files; what is still there after the grace is a leak.
	leaks := Check(dir)
	for deadline := time.Now().Add(settle); len(leaks) > 0 && time.Now().Before(deadline); leaks = Check(dir) {
		time.Sleep(250 * time.Millisecond)
	}
	if len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "tmpguard: FAIL: the tests left this behind in their temporary folder %s (a test, or a program it ran, does not clean up; see docs/testing/leaks.md):\n", dir)
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  ", l)
		}
		if code == 0 {
			code = 1
		}
	}
	for _, msg := range Remove(dir) {
		fmt.Fprintln(os.Stderr, "tmpguard:", msg)
	}
	return code
}

// settle is how long Main waits for the folder to empty after the tests.
const settle = 5 * time.Second

var exitHooks []func()

// AtExit registers fn to run after all tests of the binary and before the
// check: for things a test binary keeps for its whole life on purpose (a
// binary built once and shared by every test).
func AtExit(fn func()) { exitHooks = append(exitHooks, fn) }

func runExitHooks() {
	for i := len(exitHooks) - 1; i >= 0; i-- {
		exitHooks[i]()
	}
	exitHooks = nil
}

func create(base string) (string, error) {
	self := os.Getpid()
	// Named by the pid; taken (by something else, or a dead run's folder
	// SweepDead could not remove): the next free suffix.
	dir := filepath.Join(base, prefix+strconv.Itoa(self))
	for i := 1; ; i++ {
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			break
		}
		if !os.IsExist(err) || i > 100 {
			return "", err
		}
		dir = filepath.Join(base, fmt.Sprintf("%s%d.%d", prefix, self, i))
	}
	start, _ := startTime(self)
	if err := os.WriteFile(filepath.Join(dir, marker), []byte(fmt.Sprintf("%d %s\n", self, start)), 0o600); err != nil {
		return "", err
	}
	return dir, nil
}

// SweepDead removes the guarded folders under base whose test process is
// gone (it crashed or was killed before its cleanups), with what they
// hold: processes still running from them are killed, mounts below them
// unmounted. It returns what it did, one line each.
func SweepDead(base string) []string {
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		data, err := os.ReadFile(filepath.Join(dir, marker))
		if err != nil {
			continue // not ours
		}
		f := strings.Fields(string(data))
		if len(f) != 2 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		if st, err := startTime(pid); err == nil && st == f[1] {
			continue // its test process still runs
		}
		size := du(dir)
		msgs := Remove(dir)
		out = append(out, fmt.Sprintf("removed %s (%s) left by a test run that died before its cleanups", dir, humanSize(size)))
		out = append(out, msgs...)
	}
	return out
}

// Check lists what is left in dir: its entries (with sizes), mounts below
// it and processes running from it.
func Check(dir string) []string {
	var out []string
	for _, p := range processesUsing(dir) {
		out = append(out, "process still running: "+p.desc)
	}
	mounts, _ := mountinfo.Below(dir)
	for _, m := range mounts {
		out = append(out, "still mounted: "+m)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == marker {
			continue
		}
		p := filepath.Join(dir, e.Name())
		out = append(out, fmt.Sprintf("left: %s (%s)", p, humanSize(du(p))))
	}
	return out
}

// Remove kills the processes running from dir, unmounts what is mounted
// below it and removes it. It returns what went wrong, one line each.
func Remove(dir string) []string {
	var out []string
	for range 3 {
		procs := processesUsing(dir)
		if len(procs) == 0 {
			break
		}
		for _, p := range procs {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(300 * time.Millisecond)
	}
	mounts, err := mountinfo.Below(dir)
	if err != nil {
		out = append(out, err.Error())
	}
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			out = append(out, fmt.Sprintf("unmounting %s: %v", m, err))
		}
	}
	// Tests make read-only files and folders (a Secret's 0o400, a
	// read-only state dir): make them writable so RemoveAll can go on.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		out = append(out, err.Error())
	}
	return out
}

// ProcessesUsing lists the pids of the processes whose command line,
// working folder, executable or root lies in dir.
func ProcessesUsing(dir string) []int {
	if !filepath.IsAbs(dir) {
		return nil
	}
	var pids []int
	for _, p := range processesUsing(filepath.Clean(dir)) {
		pids = append(pids, p.pid)
	}
	return pids
}

type process struct {
	pid  int
	desc string
}

// processesUsing lists the processes whose command line, working folder
// or executable lies in dir (a detached supervisor, a kubelet, qemu).
func processesUsing(dir string) []process {
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var out []process
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		root, _ := os.Readlink(filepath.Join(p, "root")) // a container's
		uses := within(cwd, dir) || within(exe, dir) || within(root, dir)
		for _, a := range args {
			if strings.Contains(a, dir+"/") || a == dir {
				uses = true
			}
		}
		if uses {
			desc := strings.Join(args, " ")
			if len(desc) > 200 {
				desc = desc[:200] + "…"
			}
			out = append(out, process{pid: pid, desc: fmt.Sprintf("pid %d: %s", pid, desc)})
		}
	}
	return out
}

func within(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// MountsBelow lists the mount points below dir, deepest first.
func MountsBelow(dir string) ([]string, error) { return mountinfo.Below(dir) }

// startTime is field 22 of /proc/<pid>/stat: when the process started, in
// clock ticks since boot.
func startTime(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces; fields count from its
	// closing parenthesis.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return f[19], nil
}

// du is the disk usage below path, not following mounts' contents twice.
func du(path string) int64 {
	var n int64
	_ = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
