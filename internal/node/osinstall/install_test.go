package osinstall_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
)

var tools = []string{"sgdisk", "mkfs.ext4", "mkfs.vfat", "sqfstar", "unsquashfs", "grub-editenv", "mcopy", "losetup", "mount", "blkid"}

// requireLoop skips unless this process may attach loop devices and mount
// (the installer reaches an image file's partitions that way).
func requireLoop(t *testing.T) {
	t.Helper()
	osinstalltest.RequireTools(t, tools...)
	if os.Geteuid() != 0 {
		t.Skip("installing to a disk-image file needs root (loop devices and mount)")
	}
}

func newDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func pullOpts(t *testing.T, ref string) osinstall.PullOptions {
	return osinstall.PullOptions{Image: ref, CacheDir: filepath.Join(t.TempDir(), "cache"), Attempts: 2, RetryWait: 10 * time.Millisecond, Log: t.Logf}
}

// inPartition runs f with partition label of the disk image mounted.
func inPartition(t *testing.T, disk, label string, f func(dir string)) {
	t.Helper()
	ctx := context.Background()
	d, err := osinstall.OpenDisk(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := d.ReadLayout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir, done, err := d.Mount(ctx, l.Get(label))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := done(); err != nil {
			t.Error(err)
		}
	}()
	f(dir)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// squashfsFile prints a file from a squashfs image.
func squashfsFile(t *testing.T, img, p string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-cat", img, p).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -cat %s %s: %v\n%s", img, p, err, out)
	}
	return string(out)
}

func env(t *testing.T, disk string) osinstall.Env {
	t.Helper()
	var e osinstall.Env
	inPartition(t, disk, osinstall.LabelState, func(dir string) {
		var err error
		if e, err = osinstall.ReadEnv(context.Background(), filepath.Join(dir, osinstall.GrubEnv)); err != nil {
			t.Fatal(err)
		}
	})
	return e
}

func wantEnv(t *testing.T, disk string, want map[string]string) {
	t.Helper()
	got := env(t, disk)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("grubenv %s = %q, want %q (env %v)", k, got[k], v, got)
		}
	}
}

// TestInstallUpgradeConfirmRollbackReset walks one disk image through the
// machine's life: install v1, upgrade to v2 and confirm it, upgrade to v3
// which GRUB rolls back, and reset.
func TestInstallUpgradeConfirmRollbackReset(t *testing.T) {
	requireLoop(t)
	ctx := context.Background()
	reg := osinstalltest.NewRegistry(t)
	v1 := reg.Push(t, "os", "v1", osinstalltest.Build(t, osinstalltest.Image{Version: "1.0"}))
	v2 := reg.Push(t, "os", "v2", osinstalltest.Build(t, osinstalltest.Image{Version: "2.0"}))
	v3 := reg.Push(t, "os", "v3", osinstalltest.Build(t, osinstalltest.Image{Version: "3.0"}))
	disk := newDisk(t, 512<<20)
	nodeCfg := []byte("registration:\n  url: https://manager.example/v1/machines/register/x\n")

	t.Run("install", func(t *testing.T) {
		res, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: pullOpts(t, "oci:"+v1), NodeConfig: nodeCfg,
			CloudConfigs: map[string][]byte{"90_registration.yaml": []byte("#cloud-config\nruncmd: [echo hi]\n")}, Log: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("installed in %s: %+v", res.Duration, res.Layout)
		out, err := exec.Command("sgdisk", "-p", disk).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, l := range []string{"EF_EFI", "EF_OEM", "EF_RECOVERY", "EF_STATE", "EF_PERSISTENT"} {
			if !strings.Contains(string(out), l) {
				t.Errorf("sgdisk -p lacks partition %s:\n%s", l, out)
			}
		}
		for _, p := range res.Layout {
			out, err := exec.Command("blkid", "-p", "-O", strconv.FormatInt(p.Start, 10), "-s", "LABEL", "-s", "TYPE", "-o", "export", disk).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "LABEL="+p.Label) || !strings.Contains(string(out), "TYPE="+p.FS) {
				t.Errorf("partition %d: blkid says %q (%v), want label %s type %s", p.Num, out, err, p.Label, p.FS)
			}
		}
		inPartition(t, disk, osinstall.LabelState, func(dir string) {
			if got := squashfsFile(t, filepath.Join(dir, "images/a.squashfs"), "etc/os-release"); !strings.Contains(got, `VERSION_ID="1.0"`) {
				t.Errorf("slot a's os-release = %q: the upper layer did not win", got)
			}
			if got := readFile(t, filepath.Join(dir, "boot/a/vmlinuz")); got != "kernel 1.0" {
				t.Errorf("boot/a/vmlinuz = %q (the image's /boot/vmlinuz is a symlink)", got)
			}
			if got := readFile(t, filepath.Join(dir, "boot/a/initrd")); got != "initrd 1.0" {
				t.Errorf("boot/a/initrd = %q", got)
			}
			cfg := readFile(t, filepath.Join(dir, osinstall.GrubCfg))
			if !strings.Contains(cfg, "edgefleet.root=EF_STATE:/images/a.squashfs edgefleet.mode=disk edgefleet.slot=a") {
				t.Errorf("grub.cfg lacks slot a's kernel arguments:\n%s", cfg)
			}
		})
		wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "", "try_count": ""})
		inPartition(t, disk, osinstall.LabelRecovery, func(dir string) {
			if got := squashfsFile(t, filepath.Join(dir, "images/recovery.squashfs"), "usr/bin/edgefleet-node"); !strings.Contains(got, "edgefleet-node: started") {
				t.Errorf("recovery image lacks edgefleet-node: %q", got)
			}
			if !strings.Contains(readFile(t, filepath.Join(dir, osinstall.GrubCfg)), "edgefleet.mode=recovery") {
				t.Error("EF_RECOVERY has no grub.cfg booting recovery")
			}
		})
		d, _ := osinstall.OpenDisk(disk)
		efi, err := d.ReadEFIFile(ctx, res.Layout.Get(osinstall.LabelEFI), osinstall.EFIBoot)
		d.Close()
		if err != nil || string(efi) != "MZ fake grub efi 1.0" {
			t.Errorf("EFI/BOOT/BOOTX64.EFI = %q, %v", efi, err)
		}
		inPartition(t, disk, osinstall.LabelOEM, func(dir string) {
			if got := readFile(t, filepath.Join(dir, "edgefleet-node.yaml")); got != string(nodeCfg) {
				t.Errorf("node config = %q", got)
			}
			if got := readFile(t, filepath.Join(dir, "cloud-config/90_registration.yaml")); !strings.Contains(got, "runcmd") {
				t.Errorf("cloud-config = %q", got)
			}
		})
		inPartition(t, disk, osinstall.LabelPersistent, func(dir string) {
			for _, d := range []string{"var-lib", "home", "etc-overlay/upper", "etc-overlay/work"} {
				if st, err := os.Stat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
					t.Errorf("EF_PERSISTENT lacks %s/", d)
				}
			}
		})
		st, err := osinstall.ReadStatus(ctx, disk, "")
		if err != nil {
			t.Fatal(err)
		}
		if st.ActiveSlot != "a" || st.Slots["a"].Version != "1.0" || st.Slots["a"].Name != "edgefleet-test" || st.LastUpgrade != nil {
			t.Errorf("status after install = %+v", st)
		}
	})

	t.Run("upgrade then confirm", func(t *testing.T) {
		info, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: pullOpts(t, v2), BootedSlot: "a", Log: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if info.Slot != "b" || info.Result != osinstall.UpgradePending || info.Version != "2.0" {
			t.Errorf("upgrade = %+v", info)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "b", "try_count": "3"})
		// Slot a is untouched; slot b has v2.
		inPartition(t, disk, osinstall.LabelState, func(dir string) {
			if got := readFile(t, filepath.Join(dir, "boot/a/vmlinuz")); got != "kernel 1.0" {
				t.Errorf("upgrade changed the active slot: %q", got)
			}
			if got := squashfsFile(t, filepath.Join(dir, "images/b.squashfs"), "etc/os-release"); !strings.Contains(got, "2.0") {
				t.Errorf("slot b = %q", got)
			}
		})
		// A confirm from the active slot changes nothing.
		if res, err := osinstall.Confirm(ctx, disk, "a"); err != nil || res.Confirmed {
			t.Fatalf("confirm from a while b is on trial = %+v, %v", res, err)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "b"})
		// Upgrading again while running the unconfirmed trial slot is refused.
		if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: pullOpts(t, v3), BootedSlot: "b"}); err == nil || !strings.Contains(err.Error(), "on trial") {
			t.Errorf("upgrade from the trial slot: %v", err)
		}
		res, err := osinstall.Confirm(ctx, disk, "b")
		if err != nil || !res.Confirmed {
			t.Fatalf("confirm = %+v, %v", res, err)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "b", "try_slot": "", "try_count": ""})
		if lu := res.Status.LastUpgrade; lu == nil || lu.Result != osinstall.UpgradeSucceeded || lu.Version != "2.0" {
			t.Errorf("last upgrade after confirm = %+v", lu)
		}
	})

	t.Run("failed upgrade leaves the boot setup alone", func(t *testing.T) {
		before := env(t, disk)
		broken := pullOpts(t, "127.0.0.1:1/os:v9")
		if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: broken, BootedSlot: "b"}); err == nil {
			t.Fatal("upgrade from an unreachable registry succeeded")
		}
		wantEnv(t, disk, map[string]string{"active_slot": before["active_slot"], "try_slot": before["try_slot"], "try_count": before["try_count"]})
		st, err := osinstall.ReadStatus(ctx, disk, "b")
		if err != nil || st.LastUpgrade.Result != osinstall.UpgradeFailed || !strings.Contains(st.LastUpgrade.Message, "is the registry reachable") {
			t.Fatalf("status after a failed upgrade = %+v, %v", st.LastUpgrade, err)
		}
	})

	t.Run("upgrade rolled back by the bootloader", func(t *testing.T) {
		if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: pullOpts(t, v3), BootedSlot: "b", Tries: 2}); err != nil {
			t.Fatal(err)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "b", "try_slot": "a", "try_count": "2"})
		// What grub.cfg does on the boot after the last try (proved in a VM
		// by TestGrubBootAssessmentVM): clear the trial, flag the rollback.
		inPartition(t, disk, osinstall.LabelState, func(dir string) {
			if _, err := osinstall.UpdateEnv(ctx, filepath.Join(dir, osinstall.GrubEnv), func(e osinstall.Env) {
				e["try_slot"], e["try_count"], e["rolled_back"] = "", "", "a"
			}); err != nil {
				t.Fatal(err)
			}
		})
		st, err := osinstall.ReadStatus(ctx, disk, "b")
		if err != nil || st.LastUpgrade.Result != osinstall.UpgradeRolledBack {
			t.Fatalf("status before confirm = %+v, %v", st, err)
		}
		res, err := osinstall.Confirm(ctx, disk, "b")
		if err != nil || res.Confirmed || res.RolledBack != "a" {
			t.Fatalf("confirm after rollback = %+v, %v", res, err)
		}
		lu := res.Status.LastUpgrade
		if lu.Result != osinstall.UpgradeRolledBack || lu.Version != "3.0" || !strings.Contains(lu.Message, "went back to slot b") {
			t.Errorf("last upgrade = %+v", lu)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "b", "rolled_back": ""})
		if st := res.Status; st.ActiveSlot != "b" || st.Booted().Version != "2.0" {
			t.Errorf("status = %+v", st)
		}
	})

	t.Run("reset", func(t *testing.T) {
		inPartition(t, disk, osinstall.LabelPersistent, func(dir string) {
			for _, f := range []string{"var-lib/edgefleet-node/state.json", "home/user/notes"} {
				os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		})
		if err := osinstall.Reset(ctx, osinstall.ResetOptions{Device: disk, BootedSlot: "b"}); err == nil {
			t.Error("reset from the running slot was not refused")
		}
		if err := osinstall.ScheduleReset(ctx, osinstall.ResetOptions{Device: disk, ResetOEM: true}); err != nil {
			t.Fatal(err)
		}
		wantEnv(t, disk, map[string]string{"next_entry": "recovery"})
		pending, err := osinstall.PendingReset(ctx, disk)
		if err != nil || pending == nil || !pending.ResetOEM || pending.ResetPersistent {
			t.Fatalf("pending reset = %+v, %v", pending, err)
		}
		pending.BootedSlot, pending.Log = "recovery", t.Logf
		if err := osinstall.Reset(ctx, *pending); err != nil {
			t.Fatal(err)
		}
		wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "", "next_entry": ""})
		inPartition(t, disk, osinstall.LabelState, func(dir string) {
			if got := readFile(t, filepath.Join(dir, "boot/a/vmlinuz")); got != "kernel 1.0" {
				t.Errorf("slot a after reset = %q, want the recovery image's kernel", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "images/b.squashfs")); err == nil {
				t.Error("slot b survived the reset")
			}
		})
		inPartition(t, disk, osinstall.LabelPersistent, func(dir string) {
			if _, err := os.Stat(filepath.Join(dir, "var-lib/edgefleet-node")); err == nil {
				t.Error("the node state survived the reset: the machine would not register as new")
			}
			if _, err := os.Stat(filepath.Join(dir, "home/user/notes")); err != nil {
				t.Error("reset-persistent false wiped persistent data")
			}
		})
		inPartition(t, disk, osinstall.LabelOEM, func(dir string) {
			if _, err := os.Stat(filepath.Join(dir, "cloud-config")); err == nil {
				t.Error("reset-oem left the cloud-config")
			}
			if _, err := os.Stat(filepath.Join(dir, "edgefleet-node.yaml")); err != nil {
				t.Error("reset removed the node config: the machine cannot register again")
			}
		})
		if p, err := osinstall.PendingReset(ctx, disk); err != nil || p != nil {
			t.Errorf("pending reset after reset = %+v, %v", p, err)
		}
		// reset-persistent wipes everything on EF_PERSISTENT.
		if err := osinstall.Reset(ctx, osinstall.ResetOptions{Device: disk, ResetPersistent: true}); err != nil {
			t.Fatal(err)
		}
		inPartition(t, disk, osinstall.LabelPersistent, func(dir string) {
			if _, err := os.Stat(filepath.Join(dir, "home/user")); err == nil {
				t.Error("reset-persistent kept home/user")
			}
		})
	})
}

// TestInstallRefuses: each bad input fails with a message saying what is
// wrong, before the disk is touched.
func TestInstallRefuses(t *testing.T) {
	requireLoop(t)
	ctx := context.Background()
	reg := osinstalltest.NewRegistry(t)
	good := reg.Push(t, "os", "good", osinstalltest.Build(t, osinstalltest.Image{Version: "1"}))
	big := reg.Push(t, "os", "big", osinstalltest.Build(t, osinstalltest.Image{Version: "1", Padding: 40 << 20}))
	noKernel := reg.Push(t, "os", "nokernel", osinstalltest.Build(t, osinstalltest.Image{Version: "1", Omit: []string{"boot/vmlinuz", "usr/lib/edgefleet/grub/bootx64.efi"}}))
	repo, _, _ := strings.Cut(good, ":good")
	otherDigest := "sha256:" + strings.Repeat("0", 64)
	// A registry (or a man in the middle) answering the pinned digest with
	// another image.
	reg.Alias(otherDigest, "good")

	mounted := newDisk(t, 512<<20)
	if _, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: mounted, Pull: pullOpts(t, good)}); err != nil {
		t.Fatal(err)
	}
	d, _ := osinstall.OpenDisk(mounted)
	l, _ := d.ReadLayout(ctx)
	_, unmount, err := d.Mount(ctx, l.Get(osinstall.LabelPersistent))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(); d.Close() })

	tests := []struct {
		name, image, want string
		size              int64
		disk              string
	}{
		{"disk too small for any image", good, "needs at least", 200 << 20, ""},
		{"disk too small for this image", big, "needs at least 4", 360 << 20, ""},
		{"image without a kernel", noKernel, "lacks /boot/vmlinuz, /usr/lib/edgefleet/grub/bootx64.efi", 512 << 20, ""},
		{"wrong digest", repo + "@" + otherDigest, "served content with another digest", 512 << 20, ""},
		{"unreachable registry", "127.0.0.1:1/os:v1", "is the registry reachable", 512 << 20, ""},
		{"target in use", good, "it is in use", 0, mounted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := tt.disk
			if disk == "" {
				disk = newDisk(t, tt.size)
			}
			_, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: pullOpts(t, tt.image)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			t.Logf("refused: %v", err)
			var ie *osinstall.ImageError
			if strings.Contains(tt.want, "lacks") && !errors.As(err, &ie) {
				t.Errorf("not an ImageError: %T", err)
			}
			if tt.disk == "" {
				if out, _ := exec.Command("sgdisk", "-p", disk).CombinedOutput(); strings.Contains(string(out), "EF_") {
					t.Errorf("refused install partitioned the disk anyway:\n%s", out)
				}
			}
		})
	}
}

// TestPullResumesWithAuth: a pull that failed on one layer keeps the layers
// it finished, so the next pull fetches only the missing one; credentials
// come from a docker config file.
func TestPullResumesWithAuth(t *testing.T) {
	osinstalltest.RequireTools(t, "sqfstar")
	ctx := context.Background()
	reg := osinstalltest.NewRegistry(t)
	reg.Auth = "robot:s3cret"
	img := osinstalltest.Build(t, osinstalltest.Image{Version: "1"})
	ref := reg.Push(t, "os", "v1", img)
	layers, _ := img.Layers()
	first, _ := layers[0].Digest()
	second, _ := layers[1].Digest()

	o := pullOpts(t, ref)
	o.WorkDir = t.TempDir()
	if _, err := osinstall.Pull(ctx, o); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "401") {
		t.Fatalf("pull without credentials: %v", err)
	}
	dockerConfig := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(dockerConfig, []byte(`{"auths":{"`+reg.Host+`":{"auth":"cm9ib3Q6czNjcmV0"}}}`), 0o600)
	o.DockerConfig = dockerConfig

	reg.FailBlob(second, 1000)
	if _, err := osinstall.Pull(ctx, o); err == nil || !strings.Contains(err.Error(), second.String()) {
		t.Fatalf("pull with a failing layer: %v", err)
	}
	if reg.BlobGets(first) != 1 {
		t.Fatalf("first layer fetched %d times", reg.BlobGets(first))
	}
	failed := reg.BlobGets(second)
	reg.FailBlob(second, 0)
	got, err := osinstall.Pull(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if reg.BlobGets(first) != 1 || reg.BlobGets(second) != failed+1 {
		t.Errorf("after resume: first layer fetched %d times (want 1), second %d (want %d)", reg.BlobGets(first), reg.BlobGets(second), failed+1)
	}
	if got.Version != "1" || got.Name != "edgefleet-test" {
		t.Errorf("pulled %+v", got)
	}
}
