package osinstall_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
)

// TestHelperProcess runs one install or upgrade in a child process for
// TestKilledMidWay; it is not a test on its own.
func TestHelperProcess(t *testing.T) {
	op := os.Getenv("EDGEFLEET_OSINSTALL_HELPER")
	if op == "" {
		t.Skip("helper process for TestKilledMidWay")
	}
	log := func(f string, a ...any) { fmt.Printf(f+"\n", a...) }
	pull := osinstall.PullOptions{Image: os.Getenv("HELPER_IMAGE"), CacheDir: os.Getenv("HELPER_CACHE"), Log: log}
	var err error
	switch op {
	case "install":
		_, err = osinstall.Install(context.Background(), osinstall.InstallOptions{Device: os.Getenv("HELPER_DISK"), Pull: pull, Log: log})
	case "upgrade":
		_, err = osinstall.Upgrade(context.Background(), osinstall.UpgradeOptions{Device: os.Getenv("HELPER_DISK"), Pull: pull, BootedSlot: "a", Log: log})
	}
	fmt.Println("helper done:", err)
}

// killAt runs op in a child and SIGKILLs it when it prints a line
// containing at: the process dies mid-write, as on a power cut (without the
// page cache loss). It then cleans up the mounts, loop devices and
// temporary files the child left behind.
func killAt(t *testing.T, op, disk, image, cache, at string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	// The killed child cannot remove its work folder (its edgefleet-install-
	// or -upgrade- download, ~26 MB) nor unmount: both go to a folder of
	// this test's, emptied below and removed when the test ends.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "EDGEFLEET_OSINSTALL_HELPER="+op, "HELPER_DISK="+disk, "HELPER_IMAGE="+image, "HELPER_CACHE="+cache)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), at) {
			cmd.Process.Kill()
			killed = true
			break
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the %s never reached %q", op, at)
	}
	// Unmount what the dead process mounted, detach its loop devices.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], tmp+"/") {
			exec.Command("umount", f[4]).Run()
			os.Remove(f[4])
		}
	}
	loops, _ := exec.Command("losetup", "-j", disk).Output()
	for _, l := range strings.Split(string(loops), "\n") {
		if dev, _, ok := strings.Cut(l, ":"); ok {
			exec.Command("losetup", "-d", dev).Run()
		}
	}
}

// TestKilledMidWay: an upgrade killed while writing the new slot leaves the
// boot configuration on the old slot, and the next upgrade works; an
// install killed before its last step leaves a disk firmware does not boot
// (no EFI binary), and installing again works.
func TestKilledMidWay(t *testing.T) {
	requireLoop(t)
	ctx := context.Background()
	reg := osinstalltest.NewRegistry(t)
	v1 := reg.Push(t, "os", "v1", osinstalltest.Build(t, osinstalltest.Image{Version: "1", Padding: 24 << 20}))
	v2 := reg.Push(t, "os", "v2", osinstalltest.Build(t, osinstalltest.Image{Version: "2", Padding: 24 << 20}))
	cache := t.TempDir()

	t.Run("upgrade", func(t *testing.T) {
		disk := newDisk(t, 1<<30)
		if _, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: osinstall.PullOptions{Image: v1, CacheDir: cache}}); err != nil {
			t.Fatal(err)
		}
		killAt(t, "upgrade", disk, v2, cache, "writing slot b")
		inPartition(t, disk, osinstall.LabelState, func(dir string) {
			_, err := os.Stat(filepath.Join(dir, "images/b.squashfs.new"))
			t.Logf("killed with a half-written slot b (images/b.squashfs.new present): %v", err == nil)
		})
		wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "", "try_count": ""})
		if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: osinstall.PullOptions{Image: v2, CacheDir: cache}, BootedSlot: "a"}); err != nil {
			t.Fatalf("upgrade after the killed one: %v", err)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "b", "try_count": "3"})
	})

	t.Run("install", func(t *testing.T) {
		disk := newDisk(t, 1<<30)
		killAt(t, "install", disk, v1, cache, "writing slot a")
		d, _ := osinstall.OpenDisk(disk)
		l, err := d.ReadLayout(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := d.ReadEFIFile(ctx, l.Get(osinstall.LabelEFI), osinstall.EFIBoot); err == nil && len(b) > 0 {
			t.Error("a half-installed disk has a boot loader: firmware would boot it")
		}
		d.Close()
		if _, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: osinstall.PullOptions{Image: v1, CacheDir: cache}}); err != nil {
			t.Fatalf("install again: %v", err)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "a"})
	})
}
