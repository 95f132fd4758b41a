package osinstall_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
	"github.com/edgefleet/edgefleet/internal/node/osinstall/osinstalltest"
	"github.com/edgefleet/edgefleet/internal/osimage"
)

// biosFiles builds the OS image's real GRUB i386-pc core.img and boot.img.
func biosFiles(t *testing.T) (core, boot []byte) {
	t.Helper()
	osinstalltest.RequireTools(t, "grub-mkimage")
	if _, err := os.Stat("/usr/lib/grub/i386-pc/boot.img"); err != nil {
		t.Skip("GRUB's i386-pc modules are missing: install grub-pc-bin (hack/install-deps.sh)")
	}
	dir := t.TempDir()
	if err := osimage.BuildBootBIOS(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	core, err := os.ReadFile(filepath.Join(dir, "core.img"))
	if err != nil {
		t.Fatal(err)
	}
	boot, err = os.ReadFile(filepath.Join(dir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	return core, boot
}

// TestInstallWritesBIOSBoot installs an image with BIOS boot code to a
// disk-image file and checks what SeaBIOS will read, as grub-bios-setup
// would have written it: the EF02 partition in the gap before EF_EFI holds
// core.img with its blocklist pointing at its own second sector; the MBR
// is boot.img pointing at core.img, with GPT's protective partition entry
// kept. (TestGrubBootAssessmentVM boots such a disk with SeaBIOS.)
func TestInstallWritesBIOSBoot(t *testing.T) {
	requireLoop(t)
	core, boot := biosFiles(t)
	reg := osinstalltest.NewRegistry(t)
	ref := reg.Push(t, "os", "v1", osinstalltest.Build(t, osinstalltest.Image{Version: "1.0", Files: map[string][]byte{
		osinstall.ImageGrubBIOSCore: core, osinstall.ImageGrubBIOSBoot: boot,
	}}))
	disk := newDisk(t, 512<<20)
	if _, err := osinstall.Install(context.Background(), osinstall.InstallOptions{Device: disk, Pull: pullOpts(t, "oci:"+ref)}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sgdisk", "-i", "6", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"21686148-6449-6E6F-744E-656564454649 (BIOS boot partition)", "First sector: 34 ", "Last sector: 2047 ", "Partition name: 'EF_BIOS'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sgdisk -i 6 lacks %q:\n%s", want, out)
		}
	}
	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	mbr := raw[:512]
	if !bytes.Equal(mbr[510:], []byte{0x55, 0xaa}) || mbr[0x1c2] != 0xee {
		t.Errorf("MBR signature % x, first partition type %#x: want 55 aa and GPT's protective 0xee", mbr[510:], mbr[0x1c2])
	}
	if got := binary.LittleEndian.Uint64(mbr[0x5c:]); got != 34 {
		t.Errorf("boot.img loads core.img from sector %d, want 34", got)
	}
	if !bytes.Equal(mbr[0x66:0x68], []byte{0x90, 0x90}) {
		t.Errorf("boot.img's drive check % x, want 90 90 (hard disk)", mbr[0x66:0x68])
	}
	if !bytes.Equal(mbr[:0x03], boot[:0x03]) || !bytes.Equal(mbr[0x68:0x1b8], boot[0x68:0x1b8]) {
		t.Error("the MBR's code is not boot.img's")
	}
	embedded := raw[34*512 : 34*512+len(core)]
	if got := binary.LittleEndian.Uint64(embedded[500:]); got != 35 {
		t.Errorf("core.img's blocklist starts at sector %d, want 35", got)
	}
	if !bytes.Equal(embedded[:500], core[:500]) || !bytes.Equal(embedded[512:], core[512:]) {
		t.Error("core.img in the BIOS boot partition differs from the image's")
	}
	if p, err := osinstall.OpenDisk(disk); err != nil {
		t.Fatal(err)
	} else {
		defer p.Close()
		if _, err := p.ReadLayout(context.Background()); err != nil {
			t.Errorf("the layout with EF_BIOS does not read back: %v", err)
		}
	}
}

func TestWriteBIOSBootRefuses(t *testing.T) {
	core, boot := biosFiles(t)
	for _, tc := range []struct {
		name       string
		boot, core []byte
		want       string
	}{
		{"boot.img without a boot signature", make([]byte, 512), core, "not GRUB's boot.img"},
		{"boot.img of another size", append(append([]byte(nil), boot...), 0), core, "not GRUB's boot.img"},
		{"core.img larger than the partition", boot, make([]byte, 2014*512+1), "holds 2014 sectors"},
		{"core.img of one sector", boot, core[:512], "holds 2014 sectors"},
		{"not a grub-mkimage core.img", boot, make([]byte, 20*512), "not an i386-pc core.img"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "disk")
			if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			err := osinstall.WriteBIOSBoot(disk, tc.boot, tc.core)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			raw, _ := os.ReadFile(disk)
			if !bytes.Equal(raw, make([]byte, 1<<20)) {
				t.Error("a refused write changed the disk")
			}
		})
	}
}
