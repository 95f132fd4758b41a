package osinstall_test

import (
	"bytes"
	"context"

	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
)

// embeddedGrubCfg is the configuration the contract (§1) puts inside the
// OS image's standalone GRUB EFI binary.
const embeddedGrubCfg = `search --no-floppy --label EF_STATE --set=root
if [ -f ($root)/grub/grub.cfg ]; then configfile ($root)/grub/grub.cfg; fi
search --no-floppy --label EF_RECOVERY --set=root
configfile ($root)/grub/grub.cfg
`

// testInit prints the kernel command line and powers off: enough to see
// which slot GRUB booted with which arguments.
const testInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "edgefleet-test-init: cmdline: $(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
`

// TestGrubBootAssessmentVM boots an installed disk image under qemu + OVMF
// (TCG) to prove the grub.cfg the installer writes: a new slot on trial is
// booted try_count times, then GRUB rolls back to the active slot by itself
// and says so in the environment; a confirmed slot stays booted.
func TestGrubBootAssessmentVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots virtual machines")
	}
	requireLoop(t)
	osinstalltest.RequireTools(t, "qemu-system-x86_64", "grub-mkstandalone", "cpio", "gzip")
	ovmf := "/usr/share/ovmf/OVMF.fd"
	if _, err := os.Stat(ovmf); err != nil {
		t.Skip("ovmf not installed: run hack/install-deps.sh")
	}
	ctx := context.Background()
	kernel := testKernel(t)
	initrd := testInitrd(t)
	efi := testGrubEFI(t)
	reg := osinstalltest.NewRegistry(t)
	image := func(v string) string {
		return reg.Push(t, "os", "v"+v, osinstalltest.Build(t, osinstalltest.Image{Version: v, Files: map[string][]byte{
			"boot/vmlinuz-6.1.0-test": kernel, "boot/initrd": initrd, "usr/lib/edgefleet/grub/bootx64.efi": efi,
		}}))
	}
	disk := newDisk(t, 512<<20)
	if _, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: pullOpts(t, image("1"))}); err != nil {
		t.Fatal(err)
	}
	if got := bootSlot(t, disk, ovmf); got != "a" {
		t.Fatalf("fresh install booted slot %q, want a", got)
	}
	if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: pullOpts(t, image("2")), BootedSlot: "a"}); err != nil {
		t.Fatal(err)
	}
	// No confirmation: three tries of b, then GRUB goes back to a.
	var seen []string
	for range osinstall.DefaultTries + 1 {
		seen = append(seen, bootSlot(t, disk, ovmf))
	}
	if strings.Join(seen, ",") != "b,b,b,a" {
		t.Fatalf("boots went to slots %v, want b b b (trial) then a (rollback)", seen)
	}
	wantEnv(t, disk, map[string]string{"active_slot": "a", "try_slot": "", "rolled_back": "b"})
	res, err := osinstall.Confirm(ctx, disk, "a")
	if err != nil || res.RolledBack != "b" || res.Status.LastUpgrade.Result != osinstall.UpgradeRolledBack {
		t.Fatalf("confirm after the rollback = %+v, %v", res, err)
	}
	// Upgrade again, confirm on the first boot of b: b stays.
	if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: pullOpts(t, image("3")), BootedSlot: "a"}); err != nil {
		t.Fatal(err)
	}
	if got := bootSlot(t, disk, ovmf); got != "b" {
		t.Fatalf("upgraded disk booted %q, want b", got)
	}
	if res, err := osinstall.Confirm(ctx, disk, "b"); err != nil || !res.Confirmed {
		t.Fatalf("confirm = %+v, %v", res, err)
	}
	if got := bootSlot(t, disk, ovmf); got != "b" {
		t.Fatalf("confirmed slot b, but the disk booted %q", got)
	}
	// A scheduled reset boots recovery once.
	if err := osinstall.ScheduleReset(ctx, osinstall.ResetOptions{Device: disk}); err != nil {
		t.Fatal(err)
	}
	if got := bootSlot(t, disk, ovmf); got != "recovery" {
		t.Fatalf("scheduled reset booted %q, want recovery", got)
	}
	if got := bootSlot(t, disk, ovmf); got != "b" {
		t.Fatalf("after the one-time recovery boot the disk booted %q, want b", got)
	}
}

var slotRE = regexp.MustCompile(`edgefleet-test-init: cmdline: .*edgefleet\.slot=(\S+)`)

// bootSlot powers the disk on once and returns the slot its kernel got.
// TODO(vmrig): use test/vmrig when the seedboot helper's rig lands.
func bootSlot(t *testing.T, disk, ovmf string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-bios", ovmf, "-drive", "file="+disk+",format=raw,if=virtio", "-net", "none", "-serial", "mon:stdio")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	m := slotRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the VM did not reach the test init (%v) in %s; serial console:\n%s", err, time.Since(start), tail(out.String(), 3000))
	}
	t.Logf("booted slot %s in %s", m[1], time.Since(start).Round(100*time.Millisecond))
	return m[1]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// testKernel is Debian's cloud kernel from the Debian package cache
// (~/.cache/edgefleet/deb), fetched with apt-get download when missing.
// TODO(debpkg): use debpkg.Fetch once internal/debpkg is merged.
func testKernel(t *testing.T) []byte {
	t.Helper()
	home, _ := os.UserHomeDir()
	cache := filepath.Join(home, ".cache", "edgefleet", "deb")
	find := func() []string {
		m, _ := filepath.Glob(filepath.Join(cache, "linux-image-*-cloud-amd64_*", "boot", "vmlinuz-*"))
		return m
	}
	if len(find()) == 0 {
		out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
		pkg := ""
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				pkg = f[1]
			}
		}
		if err != nil || pkg == "" {
			t.Skipf("no Debian cloud kernel in %s and apt cannot name one (%v)", cache, err)
		}
		dl := t.TempDir()
		c := exec.Command("apt-get", "download", pkg)
		c.Dir = dl
		if out, err := c.CombinedOutput(); err != nil {
			t.Skipf("apt-get download %s: %v: %s", pkg, err, out)
		}
		debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
		for _, d := range debs {
			dst := filepath.Join(cache, strings.TrimSuffix(filepath.Base(d), ".deb"))
			if out, err := exec.Command("dpkg-deb", "-x", d, dst).CombinedOutput(); err != nil {
				t.Fatalf("dpkg-deb: %v: %s", err, out)
			}
		}
	}
	b, err := os.ReadFile(find()[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testInitrd is busybox (static, from the host's busybox-static) and
// testInit as a gzipped newc cpio.
func testInitrd(t *testing.T) []byte {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	dir := t.TempDir()
	for _, d := range []string{"bin", "proc"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755)
	os.WriteFile(filepath.Join(dir, "init"), []byte(testInit), 0o755)
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1")
	cmd.Dir, cmd.Stdout = dir, &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// testGrubEFI builds the standalone GRUB EFI binary the contract asks OS
// images to ship.
func testGrubEFI(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "embedded.cfg")
	os.WriteFile(cfg, []byte(embeddedGrubCfg), 0o644)
	out := filepath.Join(dir, "bootx64.efi")
	modules := "part_gpt fat ext2 squash4 loopback search search_label search_fs_file configfile linux normal loadenv test echo sleep reboot halt"
	if b, err := exec.Command("grub-mkstandalone", "-O", "x86_64-efi", "-o", out, "--modules="+modules,
		"--install-modules="+modules+" gzio", "--locales=", "--fonts=", "boot/grub/grub.cfg="+cfg).CombinedOutput(); err != nil {
		t.Fatalf("grub-mkstandalone: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bootx64.efi: %d KiB", len(b)>>10)
	return b
}
