package seedimage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/seedimage"
	sit "github.com/edgefleet/edgefleet/internal/seedimage/seedimagetest"
	"github.com/edgefleet/edgefleet/test/vmrig"
)

// testOSInit is the test OS image's initrd /init: it finds the medium named
// by edgefleet.root, prints the boot mode and the node config's
// registration URL, loop-mounts the root image, prints its VERSION_ID and
// powers off. (The real boot init is the OS image's; docs/os.md.)
const testOSInit = `
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
loadmods
echo "seed-test: init started"
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
root=$(arg edgefleet.root)
label=${root%%:*}
file=${root#*:}
i=0
until dev=$(findfs LABEL=$label 2>/dev/null); do
  i=$((i+1)); [ $i -gt 200 ] && { echo "seed-test: no medium labelled $label"; poweroff -f; }
  sleep 0.1
done
mkdir -p /run/medium /run/root
mount -o ro "$dev" /run/medium || echo "seed-test: cannot mount $dev"
echo "seed-test: mode=$(arg edgefleet.mode) slot=$(arg edgefleet.slot)"
echo "seed-test: registration $(sed -n 's/^ *url: *//p' /run/medium/edgefleet-node.yaml)"
mount -t squashfs -o ro,loop "/run/medium$file" /run/root && echo "seed-test: rootfs $(grep VERSION_ID /run/root/etc/os-release)"
echo "seed-test: done"
poweroff -f
`

// testOSImage pushes a tiny contract-conforming OS image (Debian's cloud
// kernel, a busybox initrd running testOSInit) and returns its pinned
// reference and VERSION_ID.
func testOSImage(t *testing.T, reg string) (ref, version string) {
	k := vmrig.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd")
	mods := append(append([]string{}, vmrig.CDROMModules...), "virtio_pci", "virtio_blk", "squashfs", "loop")
	vmrig.BuildInitramfs(t, k, vmrig.Initramfs{Init: testOSInit, Modules: mods}, initrd)
	kernel, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	version = fmt.Sprintf("t%d", time.Now().UnixNano())
	ref = sit.PushEntries(t, reg+"/os/test:"+version,
		map[string]string{"io.edgefleet.os.name": "edgefleet-test", "io.edgefleet.os.version": version},
		sit.Entry{Name: "boot", Dir: true},
		// A link, as Debian's images have: followed within the image.
		sit.Entry{Name: "boot/vmlinuz", Link: "vmlinuz-" + k.Version},
		sit.Entry{Name: "boot/vmlinuz-" + k.Version, Data: kernel},
		sit.Entry{Name: "boot/initrd", Data: rd},
		sit.Entry{Name: "etc", Dir: true},
		sit.Entry{Name: "etc/os-release", Data: []byte("NAME=edgefleet-test\nVERSION_ID=" + version + "\n")},
		sit.Entry{Name: "usr/bin/edgefleet-node", Data: []byte("#!/bin/sh\necho edgefleet-node: started\n"), Mode: 0o755},
	)
	return ref, version
}

const testRegURL = "https://10.0.2.100:8443/v1/machines/register/seedboot-test"

func buildOSMedia(t *testing.T, ref, kind string) (string, seedimage.Result) {
	t.Helper()
	files := map[string][]byte{"edgefleet-node.yaml": []byte("registration:\n  url: " + testRegURL + "\n")}
	out := filepath.Join(t.TempDir(), "seed."+kind)
	start := time.Now()
	res, err := seedimage.BuildMedia(context.Background(), seedimage.Input{Files: files, Kind: kind, OSImage: ref,
		Sources: seedimage.Sources{AllowInsecure: true}}, out)
	if err != nil {
		t.Fatalf("building %s media from %s: %v", kind, ref, err)
	}
	st, _ := os.Stat(out)
	t.Logf("%s media built in %s: %d bytes (%.1f MiB)", kind, time.Since(start).Round(time.Millisecond), st.Size(), float64(st.Size())/(1<<20))
	return out, res
}

// TestOSImageMediaBoot: media built from an OS image boot in a VM into the
// image's initrd, which finds the EDGEFLEET medium, its node config and
// root image: the ISO under BIOS and UEFI, the raw disk under UEFI.
func TestOSImageMediaBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	sit.RequireTools(t, "xorriso", "grub-mkrescue", "grub-mkstandalone", "mksquashfs", "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy")
	reg := sit.StartRegistry(t)
	ref, version := testOSImage(t, reg)
	iso, res := buildOSMedia(t, ref, seedimage.KindISO)
	if !strings.HasSuffix(ref, "@"+res.OSImageDigest) || res.OSVersion != version {
		t.Errorf("result %+v does not pin %s (version %s)", res, ref, version)
	}
	raw, _ := buildOSMedia(t, ref, seedimage.KindRaw)
	for _, tc := range []struct {
		name string
		cfg  vmrig.Config
	}{
		{"iso-bios", vmrig.Config{Firmware: vmrig.BIOS, CDROM: iso}},
		{"iso-uefi", vmrig.Config{Firmware: vmrig.UEFI, CDROM: iso}},
		{"raw-uefi", vmrig.Config{Firmware: vmrig.UEFI, Disks: []vmrig.Disk{{Path: raw, Format: "raw"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.MemoryMiB, tc.cfg.ExitOnReboot = 512, true
			vm := vmrig.New(t, tc.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			start := time.Now()
			if err := vm.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"seed-test: init started",
				"seed-test: mode=live slot=live",
				"seed-test: registration " + testRegURL,
				"seed-test: rootfs VERSION_ID=" + version,
			} {
				if _, err := vm.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta(want))); err != nil {
					t.Fatalf("%v\nconsole tail:\n%s", err, tail(vm.Console(), 3000))
				}
				if want == "seed-test: init started" {
					q, _ := vm.RSS()
					t.Logf("power-on to the image's init under %s: %s (qemu RSS %d KiB)", vm.Accel(), time.Since(start).Round(time.Millisecond), q)
				}
			}
			if err := vm.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
