package osimage_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/osimage"
	"github.com/edgefleet/edgefleet/internal/osimage/osimagetest"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

func nodeBinary(t *testing.T) string { return osimagetest.NodeBinary(t) }

func needBuilder(t *testing.T) { osimagetest.SkipWithoutBuilder(t) }

type builtImage struct {
	res    *osimage.Result
	squash string
}

// image builds (or takes from the shared cache) the test image version v and
// its squashfs root image.
func image(t *testing.T, v string, broken bool) *builtImage {
	t.Helper()
	return variantImage(t, osimage.VariantTest, v, broken)
}

func variantImage(t *testing.T, variant, v string, broken bool) *builtImage {
	t.Helper()
	img := osimagetest.Build(t, osimage.Options{Variant: variant, Version: v, Broken: broken})
	return &builtImage{res: img.Result, squash: img.Squashfs}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// ext4 makes an ext4 filesystem image labelled label holding dir's files.
func ext4(t *testing.T, out, label, dir string, mib int) {
	t.Helper()
	run(t, "mkfs.ext4", "-q", "-F", "-L", label, "-d", dir, out, fmt.Sprintf("%dM", mib))
}

// gptDisk lays the partition images out on a GPT disk (1 MiB aligned),
// each partition named like its filesystem label, and returns the first
// sector of each.
func gptDisk(t *testing.T, out string, parts []part) []int64 {
	t.Helper()
	total := int64(2) // MiB: GPT headers at both ends
	for _, p := range parts {
		total += p.mib
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(total << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"-o"}
	var starts []int64
	start := int64(2048)
	for i, p := range parts {
		end := start + p.mib*2048 - 1
		args = append(args, fmt.Sprintf("-n=%d:%d:%d", i+1, start, end), fmt.Sprintf("-c=%d:%s", i+1, p.label), fmt.Sprintf("-t=%d:8300", i+1))
		starts = append(starts, start)
		start = end + 1
	}
	run(t, "sgdisk", append(args, out)...)
	for i, p := range parts {
		if p.image == "" {
			continue
		}
		run(t, "dd", "if="+p.image, "of="+out, "bs=512", fmt.Sprintf("seek=%d", starts[i]), "conv=notrunc,sparse", "status=none")
	}
	return starts
}

type part struct {
	label string
	mib   int64
	image string
}

func sizeMiB(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()>>20 + 1
}

// nodeConfig points at a closed port: the agent's first registration
// attempt fails with that address in its error, which shows it read the
// config (and, with emulate-tpm, saved its identity under /var/lib first).
const nodeConfig = `registration:
  url: https://127.0.0.1:1/v1/machines/register/test-token
  emulate-tpm: true
`

// TestBootFromDisk boots the image's kernel and initrd with a virtio disk
// holding EF_OEM, EF_STATE (images/a.squashfs) and EF_PERSISTENT: the boot
// init mounts the root image, switch_roots, the OS reports its version and
// slot and starts edgefleet-node, and /var/lib really was EF_PERSISTENT
// (the agent's state is on it afterwards).
func TestBootFromDisk(t *testing.T) {
	needQEMU(t)
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso not found (Debian package xorriso): skipping the disk boot test")
	}
	img := image(t, "1.0.0", false)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "images"), 0o755)
	run(t, "cp", img.squash, filepath.Join(state, "images", "a.squashfs"))
	oem := filepath.Join(dir, "oem")
	os.MkdirAll(oem, 0o755)
	os.WriteFile(filepath.Join(oem, "edgefleet-node.yaml"), []byte(nodeConfig), 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	ext4(t, filepath.Join(dir, "oem.img"), "EF_OEM", oem, 16)
	ext4(t, filepath.Join(dir, "state.img"), "EF_STATE", state, int(sizeMiB(t, img.squash))+16)
	ext4(t, filepath.Join(dir, "persistent.img"), "EF_PERSISTENT", empty, 16)
	disk := filepath.Join(dir, "disk.img")
	starts := gptDisk(t, disk, []part{
		{"EF_OEM", 16, filepath.Join(dir, "oem.img")},
		{"EF_STATE", sizeMiB(t, img.squash) + 16, filepath.Join(dir, "state.img")},
		{"EF_PERSISTENT", 16, filepath.Join(dir, "persistent.img")},
	})

	// A config-only seed ISO (today's media, label EFSEED) is attached too:
	// its config wins over the OEM copy.
	seed := filepath.Join(dir, "seed")
	os.MkdirAll(seed, 0o755)
	os.WriteFile(filepath.Join(seed, "edgefleet-node.yaml"), []byte(nodeConfig), 0o644)
	run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "EFSEED", "-J", "-R", "-o", filepath.Join(dir, "seed.iso"), seed)

	start := time.Now()
	v := startVM(t, vmrig.Config{Kernel: img.res.Kernel, Initrd: img.res.Initrd,
		Append: "console=ttyS0 panic=-1 edgefleet.mode=disk edgefleet.slot=a edgefleet.root=EF_STATE:/images/a.squashfs",
		Disks:  []vmrig.Disk{{Path: disk}}, CDROM: filepath.Join(dir, "seed.iso")})
	v.waitFor("edgefleet-init: switch_root", 3*time.Minute)
	v.waitFor("edgefleet-os: edgefleet-test-os 1.0.0 (mode disk, slot a)", time.Minute)
	v.waitFor("edgefleet-node: started (edgefleet-node agent --config /run/edgefleet/seed/edgefleet-node.yaml)", time.Minute)
	t.Logf("qemu start to edgefleet-node started: %.1fs (TCG)", time.Since(start).Seconds())
	out := v.output()
	for _, want := range []string{"edgefleet-init: persistent EF_PERSISTENT", "edgefleet-init: EF_OEM", "edgefleet-init: root image /images/a.squashfs mounted",
		"edgefleet-init: config-only seed medium EFSEED"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	// The agent ran with the OEM config: it tried the registration URL.
	v.waitFor("127.0.0.1:1", time.Minute)
	// ext4 commits its journal every 5 s: give the guest's writes time to
	// reach the disk before pulling the plug.
	time.Sleep(8 * time.Second)
	v.pullPlug()

	// Read EF_PERSISTENT back: the init made var-lib, home and etc-overlay on it.
	pimg := filepath.Join(dir, "persistent-after.img")
	run(t, "dd", "if="+disk, "of="+pimg, "bs=512", fmt.Sprintf("skip=%d", starts[2]), "count=32768", "status=none")
	// The power was cut: what the guest wrote may still be in ext4's
	// journal only. Replay it the way the next boot's mount would (e2fsck
	// exits 1 when it changed something), so debugfs reads the real state.
	if err := exec.Command("e2fsck", "-fy", pimg).Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck of EF_PERSISTENT after the power cut: %v", err)
		}
	}
	ls, err := exec.Command("debugfs", "-R", "ls -p /", pimg).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, ls)
	}
	for _, d := range []string{"/var-lib/", "/home/", "/etc-overlay/"} {
		if !strings.Contains(string(ls), strings.Trim(d, "/")) {
			t.Errorf("EF_PERSISTENT has no %s after the boot:\n%s", d, ls)
		}
	}
	// /var/lib is EF_PERSISTENT's var-lib: the agent's state landed there.
	ls, err = exec.Command("debugfs", "-R", "ls -p /var-lib", pimg).CombinedOutput()
	if err != nil || !strings.Contains(string(ls), "edgefleet-node") {
		t.Errorf("EF_PERSISTENT/var-lib holds no edgefleet-node state (%v):\n%s", err, ls)
	}
}

// TestBootLive boots like seed media: an ISO labelled EDGEFLEET on the CD
// drive holds the root image and the node config; the OS sees the config at
// /run/edgefleet/seed/edgefleet-node.yaml and the agent starts with it. The
// VM has a swtpm-backed TPM: the agent opens the real TPM (no emulated one)
// and gets as far as dialling the registration URL.
func TestBootLive(t *testing.T) {
	needQEMU(t)
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso not found (Debian package xorriso): skipping the live boot test")
	}
	img := image(t, "1.0.0", false)
	dir := t.TempDir()
	media := filepath.Join(dir, "media")
	os.MkdirAll(filepath.Join(media, "edgefleet"), 0o755)
	run(t, "cp", img.squash, filepath.Join(media, "edgefleet", "rootfs.squashfs"))
	tpmConfig := strings.Replace(nodeConfig, "  emulate-tpm: true\n", "", 1)
	os.WriteFile(filepath.Join(media, "edgefleet-node.yaml"), []byte(tpmConfig), 0o644)
	iso := filepath.Join(dir, "seed.iso")
	run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "EDGEFLEET", "-J", "-R", "-o", iso, media)

	v := startVM(t, vmrig.Config{Kernel: img.res.Kernel, Initrd: img.res.Initrd, TPM: true, CDROM: iso,
		Append: "console=ttyS0 panic=-1 edgefleet.mode=live edgefleet.slot=live edgefleet.root=EDGEFLEET:/edgefleet/rootfs.squashfs"})
	v.waitFor("edgefleet-init: seed config at /run/edgefleet/seed/edgefleet-node.yaml", 3*time.Minute)
	v.waitFor("edgefleet-os: edgefleet-test-os 1.0.0 (mode live, slot live)", time.Minute)
	v.waitFor("edgefleet-node: started (edgefleet-node agent --config /run/edgefleet/seed/edgefleet-node.yaml)", time.Minute)
	v.waitFor("127.0.0.1:1", 2*time.Minute)
	out := v.output()
	if strings.Contains(out, "TPM device not available") {
		t.Error("the agent found no TPM in a VM that has one")
	}
	if strings.Contains(out, "EF_PERSISTENT") {
		t.Error("a live boot touched EF_PERSISTENT")
	}
}

// TestBootBrokenImagePanics: an image built with Broken never reaches the
// OS; its init panics and the machine restarts by itself (here: qemu exits,
// -no-reboot), which is what lets the bootloader count a failed try.
func TestBootBrokenImagePanics(t *testing.T) {
	needQEMU(t)
	img := image(t, "3.0.0", true)
	v := startVM(t, vmrig.Config{Kernel: img.res.Kernel, Initrd: img.res.Initrd,
		Append: "console=ttyS0 edgefleet.mode=disk edgefleet.slot=b edgefleet.root=EF_STATE:/images/b.squashfs"})
	v.waitFor("edgefleet-init: this image was built broken on purpose", 3*time.Minute)
	v.waitExit(2 * time.Minute)
	out := v.output()
	if !strings.Contains(out, "Kernel panic") {
		t.Errorf("no kernel panic on the console")
	}
	if strings.Contains(out, "edgefleet-node: started") {
		t.Error("the broken image started the node agent")
	}
}

// TestBootFailsClearlyWithoutRootImage: a missing root filesystem is a clear
// console message and a restart, never a hang.
func TestBootFailsClearlyWithoutRootImage(t *testing.T) {
	needQEMU(t)
	img := image(t, "1.0.0", false)
	v := startVM(t, vmrig.Config{Kernel: img.res.Kernel, Initrd: img.res.Initrd,
		Append: "console=ttyS0 edgefleet.mode=disk edgefleet.slot=a edgefleet.root=EF_STATE:/images/a.squashfs edgefleet.wait=3"})
	v.waitFor("edgefleet-init: error: no filesystem labelled EF_STATE appeared in 3s", 3*time.Minute)
	v.waitExit(2 * time.Minute)
}

// TestBootEFIHandsOverToState boots a disk the way an installed machine
// does, under UEFI (OVMF): firmware → EF_EFI's EFI/BOOT/BOOTX64.EFI (the
// image's bootx64.efi) → its embedded config finds EF_STATE and runs
// grub/grub.cfg there → kernel and initrd of slot a → the OS.
func TestBootEFIHandsOverToState(t *testing.T) {
	needQEMU(t)
	for _, c := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found (Debian packages dosfstools, mtools): skipping the UEFI boot test", c)
		}
	}
	img := image(t, "1.0.0", false)
	dir := t.TempDir()
	efi := filepath.Join(dir, "efi.img")
	run(t, "mkfs.vfat", "-C", "-n", "EF_EFI", efi, "16384")
	run(t, "mmd", "-i", efi, "::/EFI", "::/EFI/BOOT")
	run(t, "mcopy", "-i", efi, img.res.BootEFI, "::/EFI/BOOT/BOOTX64.EFI")

	state := filepath.Join(dir, "state")
	for _, d := range []string{"images", "boot/a", "grub"} {
		os.MkdirAll(filepath.Join(state, d), 0o755)
	}
	run(t, "cp", img.squash, filepath.Join(state, "images", "a.squashfs"))
	run(t, "cp", img.res.Kernel, filepath.Join(state, "boot", "a", "vmlinuz"))
	run(t, "cp", img.res.Initrd, filepath.Join(state, "boot", "a", "initrd"))
	grubCfg := `set timeout=0
menuentry "edgefleet a" {
  echo "grub: booting slot a from $root"
  linux /boot/a/vmlinuz console=ttyS0 panic=-1 edgefleet.mode=disk edgefleet.slot=a edgefleet.root=EF_STATE:/images/a.squashfs
  initrd /boot/a/initrd
}
`
	os.WriteFile(filepath.Join(state, "grub", "grub.cfg"), []byte(grubCfg), 0o644)
	stateMiB := sizeMiB(t, img.squash) + sizeMiB(t, img.res.Kernel) + sizeMiB(t, img.res.Initrd) + 16
	ext4(t, filepath.Join(dir, "state.img"), "EF_STATE", state, int(stateMiB))
	disk := filepath.Join(dir, "disk.img")
	gptDisk(t, disk, []part{{"EF_EFI", 16, efi}, {"EF_STATE", stateMiB, filepath.Join(dir, "state.img")}})
	run(t, "sgdisk", "-t=1:ef00", disk)

	start := time.Now()
	v := startVM(t, vmrig.Config{Firmware: vmrig.UEFI, Disks: []vmrig.Disk{{Path: disk}}})
	v.waitFor("edgefleet-init: found EF_STATE", 4*time.Minute)
	v.waitFor("edgefleet-os: edgefleet-test-os 1.0.0 (mode disk, slot a)", time.Minute)
	v.waitFor("edgefleet-node: started", time.Minute)
	t.Logf("UEFI power-on to edgefleet-node started: %.1fs (TCG)", time.Since(start).Seconds())
}

// TestBootSystemdVariant boots the systemd variant from a disk: the same
// boot init hands over to systemd, which starts edgefleet-node from its
// unit with the OEM config.
func TestBootSystemdVariant(t *testing.T) {
	needQEMU(t)
	img := variantImage(t, osimage.VariantSystemd, "1.0.0", false)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "images"), 0o755)
	run(t, "cp", img.squash, filepath.Join(state, "images", "a.squashfs"))
	oem := filepath.Join(dir, "oem")
	os.MkdirAll(oem, 0o755)
	os.WriteFile(filepath.Join(oem, "edgefleet-node.yaml"), []byte(nodeConfig), 0o644)
	ext4(t, filepath.Join(dir, "oem.img"), "EF_OEM", oem, 16)
	stateMiB := sizeMiB(t, img.squash) + 16
	ext4(t, filepath.Join(dir, "state.img"), "EF_STATE", state, int(stateMiB))
	disk := filepath.Join(dir, "disk.img")
	gptDisk(t, disk, []part{{"EF_OEM", 16, filepath.Join(dir, "oem.img")}, {"EF_STATE", stateMiB, filepath.Join(dir, "state.img")}})

	start := time.Now()
	v := startVM(t, vmrig.Config{Kernel: img.res.Kernel, Initrd: img.res.Initrd, Disks: []vmrig.Disk{{Path: disk}},
		Append: "console=ttyS0 panic=-1 edgefleet.mode=disk edgefleet.slot=b edgefleet.root=EF_STATE:/images/a.squashfs"})
	v.waitFor("edgefleet-init: switch_root", 3*time.Minute)
	v.waitFor("edgefleet-node: started (edgefleet-node agent --config /oem/edgefleet-node.yaml)", 4*time.Minute)
	t.Logf("qemu start to edgefleet-node started (systemd): %.1fs (TCG)", time.Since(start).Seconds())
	v.waitFor("edgefleet-os: edgefleet-test-os 1.0.0 (mode disk, slot b)", 2*time.Minute)
}

// TestBootLiveFromRawDisk: raw seed media (an SD card or virtual disk) carry
// the same files on a partition labelled EDGEFLEET; here it is vfat, the
// filesystem any laptop can write.
func TestBootLiveFromRawDisk(t *testing.T) {
	needQEMU(t)
	for _, c := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found (Debian packages dosfstools, mtools): skipping the raw seed boot test", c)
		}
	}
	img := image(t, "1.0.0", false)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "edgefleet-node.yaml"), []byte(nodeConfig), 0o644)
	mib := sizeMiB(t, img.squash) + 8
	seed := filepath.Join(dir, "seed.img")
	run(t, "mkfs.vfat", "-C", "-n", "EDGEFLEET", seed, fmt.Sprint(mib*1024))
	run(t, "mmd", "-i", seed, "::/edgefleet")
	run(t, "mcopy", "-i", seed, img.squash, "::/edgefleet/rootfs.squashfs")
	run(t, "mcopy", "-i", seed, filepath.Join(dir, "edgefleet-node.yaml"), "::/edgefleet-node.yaml")
	disk := filepath.Join(dir, "disk.img")
	gptDisk(t, disk, []part{{"EDGEFLEET", mib, seed}})

	v := startVM(t, vmrig.Config{Kernel: img.res.Kernel, Initrd: img.res.Initrd, Disks: []vmrig.Disk{{Path: disk}},
		Append: "console=ttyS0 panic=-1 edgefleet.mode=live edgefleet.slot=live edgefleet.root=EDGEFLEET:/edgefleet/rootfs.squashfs"})
	v.waitFor("edgefleet-init: found EDGEFLEET on /dev/vda1", 3*time.Minute)
	v.waitFor("edgefleet-init: seed config at /run/edgefleet/seed/edgefleet-node.yaml", time.Minute)
	v.waitFor("edgefleet-node: started (edgefleet-node agent --config /run/edgefleet/seed/edgefleet-node.yaml)", time.Minute)
}
