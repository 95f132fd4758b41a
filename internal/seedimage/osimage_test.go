package seedimage_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/seedimage"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
)

// fakeOSImage is an OS image with the contract's files; its kernel and
// initrd are placeholders (the media are checked here, booted in
// boot_test.go).
func fakeOSImage(t *testing.T, ref string, drop string) string {
	entries := []sit.Entry{
		{Name: "boot", Dir: true},
		{Name: "boot/vmlinuz-6.1.0-test", Data: []byte("kernel")},
		{Name: "boot/vmlinuz", Link: "vmlinuz-6.1.0-test"},
		{Name: "boot/initrd", Data: []byte("initrd")},
		{Name: "etc/os-release", Data: []byte("NAME=fake\nVERSION_ID=1\n")},
		{Name: "usr/bin/edgefleet-node", Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		{Name: "usr/bin/setuid-tool", Data: []byte("x"), Mode: 0o4755},
	}
	var kept []sit.Entry
	for _, e := range entries {
		if e.Name != drop {
			kept = append(kept, e)
		}
	}
	return sit.PushEntries(t, ref, map[string]string{"io.edgefleet.os.name": "fake", "io.edgefleet.os.version": "1"}, kept...)
}

// Media from an OS image hold the contract's files (docs/os/seed-media.md):
// the ISO and the raw disk's EDGEFLEET partition carry the kernel, initrd,
// root image, node config and a GRUB config booting the live system; the
// raw disk has an EFI system partition with BOOTX64.EFI.
func TestBuildFromOSImage(t *testing.T) {
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "grub-mkstandalone", "mksquashfs", "unsquashfs", "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mdir", "debugfs", "e2label")
	reg := sit.StartRegistry(t)
	ref := fakeOSImage(t, reg+"/os/fake:1", "")
	insecure := seedimage.Sources{AllowInsecure: true}
	_, digest, _ := strings.Cut(ref, "@")

	iso := filepath.Join(t.TempDir(), "seed.iso")
	res, err := seedimage.BuildMedia(context.Background(), seedimage.Input{Files: seedFiles, OSImage: "oci://" + reg + "/os/fake:1", Sources: insecure}, iso)
	if err != nil {
		t.Fatal(err)
	}
	if res.OSImageDigest != digest || res.OSName != "fake" || res.OSVersion != "1" {
		t.Errorf("result %+v, want digest %s, name fake, version 1", res, digest)
	}
	if out, err := exec.Command("xorriso", "-indev", iso, "-pvd_info").CombinedOutput(); err != nil || !strings.Contains(string(out), "Volume Id    : "+seedimage.LiveVolumeID) {
		t.Errorf("ISO volume id is not %s: %v\n%s", seedimage.LiveVolumeID, err, out)
	}
	dir := sit.ReadISO(t, iso)
	assertFiles(t, dir, seedFiles)
	assertFiles(t, dir, map[string][]byte{"boot/vmlinuz": []byte("kernel"), "boot/initrd": []byte("initrd")})
	assertLiveTree(t, dir)
	// Both firmware kinds: El Torito for BIOS and an EFI image.
	if out, err := exec.Command("xorriso", "-indev", iso, "-report_el_torito", "plain").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "BIOS") || !strings.Contains(string(out), "UEFI") {
		t.Errorf("ISO is not bootable under both BIOS and UEFI: %v\n%s", err, out)
	}

	raw := filepath.Join(t.TempDir(), "seed.img")
	if _, err := seedimage.BuildMedia(context.Background(), seedimage.Input{Files: seedFiles, Kind: seedimage.KindRaw, OSImage: ref, Sources: insecure}, raw); err != nil {
		t.Fatal(err)
	}
	parts := sit.Partitions(t, raw)
	if len(parts) != 2 || parts[0].Name != "EF_EFI" || parts[1].Name != seedimage.LiveVolumeID {
		t.Fatalf("raw partitions %+v, want EF_EFI and %s", parts, seedimage.LiveVolumeID)
	}
	esp := sit.ExtractPartition(t, raw, parts[0])
	if out, err := exec.Command("mdir", "-i", esp, "-b", "::/EFI/BOOT").CombinedOutput(); err != nil || !strings.Contains(string(out), "BOOTX64.EFI") {
		t.Errorf("EFI partition has no EFI/BOOT/BOOTX64.EFI: %v\n%s", err, out)
	}
	data, label := sit.ReadExt4(t, sit.ExtractPartition(t, raw, parts[1]))
	if label != seedimage.LiveVolumeID {
		t.Errorf("data partition label %q, want %s", label, seedimage.LiveVolumeID)
	}
	assertFiles(t, data, seedFiles)
	assertLiveTree(t, data)
}

func assertLiveTree(t *testing.T, dir string) {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(dir, "boot/grub/grub.cfg"))
	if err != nil || !strings.Contains(string(cfg), seedimage.LiveKernelArgs) {
		t.Errorf("grub.cfg does not boot %q: %v\n%s", seedimage.LiveKernelArgs, err, cfg)
	}
	root := t.TempDir()
	out, err := exec.Command("unsquashfs", "-no-xattrs", "-d", filepath.Join(root, "r"), filepath.Join(dir, seedimage.RootfsPath)).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "r/etc/os-release")); err != nil || !strings.Contains(string(b), "NAME=fake") {
		t.Errorf("root image lacks etc/os-release: %v", err)
	}
	// mksquashfs read the image's tar: modes survive (setuid included).
	if st, err := os.Lstat(filepath.Join(root, "r/usr/bin/edgefleet-node")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("edgefleet-node in the root image: %v %v", st, err)
	}
	if out, err := exec.Command("unsquashfs", "-lls", filepath.Join(dir, seedimage.RootfsPath), "usr/bin/setuid-tool").CombinedOutput(); err != nil || !strings.Contains(string(out), "-rwsr-xr-x root/root") {
		t.Errorf("setuid-tool mode/owner in the root image: %v\n%s", err, out)
	}
}

// An OS image that cannot become media fails with a message naming what
// to fix; nothing is left behind.
func TestBuildFromOSImageErrors(t *testing.T) {
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "mksquashfs")
	reg := sit.StartRegistry(t)
	good := fakeOSImage(t, reg+"/os/fake:1", "")
	other := fakeOSImage(t, reg+"/os/other:1", "etc/os-release")
	_, otherDigest, _ := strings.Cut(other, "@")
	insecure := seedimage.Sources{AllowInsecure: true}
	for _, tc := range []struct {
		name, ref, base, want string
		src                   seedimage.Sources
		limit                 int64
		osErr                 bool
	}{
		{name: "no kernel", ref: fakeOSImage(t, reg+"/os/nokernel:1", "boot/vmlinuz-6.1.0-test"), want: "/boot/vmlinuz is a link to /boot/vmlinuz-6.1.0-test, which cannot be read", osErr: true},
		{name: "no initrd", ref: fakeOSImage(t, reg+"/os/noinitrd:1", "boot/initrd"), want: "is not an edgefleet OS image: it has no /boot/initrd", osErr: true},
		{name: "no agent", ref: fakeOSImage(t, reg+"/os/noagent:1", "usr/bin/edgefleet-node"), want: "it has no /usr/bin/edgefleet-node", osErr: true},
		{name: "digest not in the repository", ref: reg + "/os/fake@" + otherDigest, want: "pulling osImage"},
		{name: "unknown tag", ref: reg + "/os/fake:2", want: "pulling osImage"},
		{name: "not a reference", ref: "Not A Reference", want: "is not a valid OCI image reference", osErr: true},
		{name: "too large", ref: good, limit: 4096, want: "larger than the 4096 bytes allowed", osErr: true},
		{name: "plain HTTP refused by default", ref: good, src: seedimage.Sources{}, want: "refusing plain HTTP"},
		{name: "with a baseImage", ref: good, base: "os.iso", want: "are both set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := insecure
			if tc.name == "plain HTTP refused by default" {
				src = tc.src
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "seed.iso")
			_, err := seedimage.BuildMedia(context.Background(), seedimage.Input{Files: seedFiles, OSImage: tc.ref, BaseImage: tc.base, Sources: src, MaxBaseBytes: tc.limit}, out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			var osErr seedimage.OSImageError
			if got := errorsAs(err, &osErr); got != tc.osErr {
				t.Errorf("OSImageError %v, want %v (%v)", got, tc.osErr, err)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func errorsAs(err error, target *seedimage.OSImageError) bool { return errors.As(err, target) }
