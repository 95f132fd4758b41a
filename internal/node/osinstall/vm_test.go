package osinstall_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
	"github.com/edgefleet/edgefleet/internal/osimage"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

// testInit prints the kernel command line and powers off: enough to see
// which slot GRUB booted with which arguments.
const testInit = `#!/bin/sh
mount -t proc proc /proc
echo "edgefleet-test-init: cmdline: $(cat /proc/cmdline)"
poweroff -f
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
	osinstalltest.RequireTools(t, "grub-mkimage")
	ctx := context.Background()
	kernel, initrd, efi, biosCore, biosBoot := bootFiles(t)
	reg := osinstalltest.NewRegistry(t)
	image := func(v string) string {
		return reg.Push(t, "os", "v"+v, osinstalltest.Build(t, osinstalltest.Image{Version: v, Files: map[string][]byte{
			"boot/vmlinuz-6.1.0-test": kernel, "boot/initrd": initrd, "usr/lib/edgefleet/grub/bootx64.efi": efi,
			osinstall.ImageGrubBIOSCore: biosCore, osinstall.ImageGrubBIOSBoot: biosBoot,
		}}))
	}
	disk := newDisk(t, 512<<20)
	if _, err := osinstall.Install(ctx, osinstall.InstallOptions{Device: disk, Pull: pullOpts(t, image("1"))}); err != nil {
		t.Fatal(err)
	}
	if got := bootSlot(t, disk); got != "a" {
		t.Fatalf("fresh install booted slot %q, want a", got)
	}
	if _, err := osinstall.Upgrade(ctx, osinstall.UpgradeOptions{Device: disk, Pull: pullOpts(t, image("2")), BootedSlot: "a"}); err != nil {
		t.Fatal(err)
	}
	// No confirmation: three tries of b, then GRUB goes back to a. The
	// first try boots with SeaBIOS (GRUB i386-pc from the BIOS boot
	// partition), the others with UEFI: one boot assessment for both.
	seen := []string{bootSlotWith(t, disk, vmrig.BIOS)}
	for range osinstall.DefaultTries {
		seen = append(seen, bootSlot(t, disk))
	}
	if strings.Join(seen, ",") != "b,b,b,a" {
		t.Fatalf("boots went to slots %v, want b (BIOS) b b (UEFI, trial) then a (rollback)", seen)
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
	if got := bootSlot(t, disk); got != "b" {
		t.Fatalf("upgraded disk booted %q, want b", got)
	}
	if res, err := osinstall.Confirm(ctx, disk, "b"); err != nil || !res.Confirmed {
		t.Fatalf("confirm = %+v, %v", res, err)
	}
	if got := bootSlot(t, disk); got != "b" {
		t.Fatalf("confirmed slot b, but the disk booted %q", got)
	}
	// A scheduled reset boots recovery once.
	if err := osinstall.ScheduleReset(ctx, osinstall.ResetOptions{Device: disk}); err != nil {
		t.Fatal(err)
	}
	if got := bootSlot(t, disk); got != "recovery" {
		t.Fatalf("scheduled reset booted %q, want recovery", got)
	}
	if got := bootSlot(t, disk); got != "b" {
		t.Fatalf("after the one-time recovery boot the disk booted %q, want b", got)
	}
}

var slotRE = regexp.MustCompile(`edgefleet-test-init: cmdline: .*edgefleet\.slot=(\S+)`)

// bootSlot powers the disk on once under UEFI (test/vmrig, TCG) and returns
// the slot its kernel got.
func bootSlot(t *testing.T, disk string) string {
	t.Helper()
	return bootSlotWith(t, disk, vmrig.UEFI)
}

// bootSlotWith boots the disk once with the given firmware.
func bootSlotWith(t *testing.T, disk string, fw vmrig.Firmware) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	vm := vmrig.New(t, vmrig.Config{Firmware: fw, MemoryMiB: 256, ExitOnReboot: true, Disks: []vmrig.Disk{{Path: disk}},
		Log: func(string, ...any) {}})
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := vm.WaitFor(ctx, slotRE)
	if err != nil {
		t.Fatalf("the VM did not reach the test init (%v) in %s; serial console:\n%s", err, time.Since(start), tail(vm.Console(), 3000))
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("booted slot %s in %s (%s)", m[1], time.Since(start).Round(100*time.Millisecond), fw)
	return m[1]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// bootFiles are a slot's boot files: Debian's cloud kernel, a busybox
// initramfs running testInit (both from test/vmrig) and the OS image's
// real bootx64.efi and BIOS core.img/boot.img (internal/osimage).
func bootFiles(t *testing.T) (kernel, initrd, efi, biosCore, biosBoot []byte) {
	t.Helper()
	dir := t.TempDir()
	k := vmrig.DebianKernel(t)
	vmrig.BuildInitramfs(t, k, vmrig.Initramfs{Init: testInit}, filepath.Join(dir, "initrd"))
	if err := osimage.BuildBootEFI(context.Background(), filepath.Join(dir, "bootx64.efi")); err != nil {
		t.Fatal(err)
	}
	if err := osimage.BuildBootBIOS(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return read(k.Vmlinuz), read(filepath.Join(dir, "initrd")), read(filepath.Join(dir, "bootx64.efi")), read(filepath.Join(dir, "core.img")), read(filepath.Join(dir, "boot.img"))
}
