package osimage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"net/http/httptest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgefleet/edgefleet/internal/osimage"
)

// TestBuild builds the test image into a fresh cache and checks what the
// OS image contract promises: labels, os-release, kernel, initrd with the
// boot init, bootx64.efi, edgefleet-node and the installer's tools; then
// that a second build is a cache hit and a build in another cache gives the
// same digest (reproducible).
func TestBuild(t *testing.T) {
	needBuilder(t)
	ctx := context.Background()
	opts := osimage.Options{Version: "2.1.0", NodeBinary: nodeBinary(t), CacheDir: t.TempDir()}
	r, err := osimage.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cached {
		t.Error("first build in an empty cache reported a cache hit")
	}
	img, err := r.Image()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if got := cfg.Config.Labels[osimage.LabelName]; got != osimage.DefaultName {
		t.Errorf("label %s = %q", osimage.LabelName, got)
	}
	if got := cfg.Config.Labels[osimage.LabelVersion]; got != "2.1.0" {
		t.Errorf("label %s = %q", osimage.LabelVersion, got)
	}

	files := readFS(t, img)
	for _, p := range []string{osimage.KernelPath, osimage.InitrdPath, osimage.NodePath, osimage.BootEFIPath,
		"usr/sbin/sgdisk", "usr/sbin/mkfs.ext4", "usr/sbin/mkfs.vfat", "usr/bin/mksquashfs", "usr/bin/sqfstar", "usr/bin/grub-editenv",
		"usr/sbin/blkid", "usr/bin/mount", "usr/bin/umount", "usr/sbin/losetup", "usr/bin/sync", "usr/sbin/poweroff", "usr/sbin/reboot",
		"usr/sbin/init", "etc/inittab", "usr/lib/edgefleet/edgefleet-node.run", "usr/lib/x86_64-linux-gnu/libc.so.6"} {
		if _, ok := files[p]; !ok {
			t.Errorf("image lacks /%s", p)
		}
	}
	osr := string(files["usr/lib/os-release"])
	for _, want := range []string{`NAME="edgefleet-test-os"`, `VERSION_ID="2.1.0"`} {
		if !strings.Contains(osr, want) {
			t.Errorf("os-release lacks %s:\n%s", want, osr)
		}
	}
	if got := string(files["etc/os-release"]); got != "-> ../usr/lib/os-release" {
		t.Errorf("/etc/os-release is %q, want a link to ../usr/lib/os-release", got)
	}
	if !bytes.Contains(files["etc/inittab"], []byte("edgefleet-node.run")) {
		t.Error("inittab does not start edgefleet-node")
	}
	initrd := cpioNames(t, r.Initrd)
	for _, want := range []string{"init", "usr/bin/busybox", "etc/edgefleet/modules", "dev/console"} {
		if !initrd[want] {
			t.Errorf("initrd lacks %s", want)
		}
	}
	if initrd["etc/edgefleet/broken"] {
		t.Error("a normal build carries the broken marker")
	}
	if efi := files[osimage.BootEFIPath]; len(efi) < 2 || string(efi[:2]) != "MZ" {
		t.Error("bootx64.efi is not a PE/EFI binary")
	}
	if boot := files[osimage.BootBIOSBootPath]; len(boot) != 512 || !bytes.Equal(boot[510:], []byte{0x55, 0xaa}) {
		t.Error("the BIOS boot.img is not a boot sector")
	}
	if core := files[osimage.BootBIOSCorePath]; len(core) < 1024 || len(core) > 2014*512 {
		t.Errorf("the BIOS core.img has %d bytes: want one that fits the 2014 sectors of the BIOS boot partition", len(core))
	}

	again, err := osimage.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Digest != r.Digest {
		t.Errorf("rebuild: cached %v digest %s, want a cache hit with %s", again.Cached, again.Digest, r.Digest)
	}
	opts.CacheDir = t.TempDir()
	other, err := osimage.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if other.Cached || other.Digest != r.Digest {
		t.Errorf("build in another cache: cached %v digest %s, want a fresh build with the same digest %s", other.Cached, other.Digest, r.Digest)
	}
	opts.Version = "2.2.0"
	v2, err := osimage.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Digest == r.Digest {
		t.Error("another version gave the same digest")
	}
}

// TestInstallerToolsRun runs the image's tools in a chroot of its
// filesystem: every shared library they need is in the image.
func TestInstallerToolsRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	b := image(t, "1.0.0", false)
	img, err := b.res.Image()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cmd := exec.Command("tar", "-x", "-C", root)
	rc := mutate.Extract(img)
	defer rc.Close()
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	for _, c := range [][]string{{"sgdisk", "--version"}, {"mkfs.ext4", "-V"}, {"mkfs.vfat", "--help"}, {"mksquashfs", "-version"},
		{"grub-editenv", "--help"}, {"blkid", "-V"}, {"mount", "-V"}, {"umount", "-V"}, {"losetup", "-V"}, {"wipefs", "-V"},
		{"edgefleet-node", "version"}, {"busybox", "true"}} {
		cmd := exec.Command("chroot", append([]string{root, "/usr/bin/env", "PATH=/usr/sbin:/usr/bin"}, c...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s in the image: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

// TestPushToRegistry pushes a built image to a real (loopback) registry and
// pulls it back by digest.
func TestPushToRegistry(t *testing.T) {
	b := image(t, "1.0.0", false)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := b.res.Image()
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/edgefleet/os:1.0.0"
	pushed, err := osimage.Push(context.Background(), img, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(pushed, "@"+b.res.Digest) {
		t.Errorf("pushed %s, want the digest %s", pushed, b.res.Digest)
	}
	r, err := name.ParseReference(pushed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Labels[osimage.LabelVersion] != "1.0.0" {
		t.Errorf("pulled labels %v", cfg.Config.Labels)
	}
}

func TestOptionsRejected(t *testing.T) {
	if testing.Short() {
		t.Skip("builds edgefleet-node: skipped in -short mode")
	}
	node := nodeBinary(t)
	notELF := filepath.Join(t.TempDir(), "node")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	for _, tt := range []struct {
		name string
		o    osimage.Options
		want string
	}{
		{"no version", osimage.Options{NodeBinary: node}, "version"},
		{"bad version", osimage.Options{Version: "1.0\nX=1", NodeBinary: node}, "version"},
		{"bad name", osimage.Options{Version: "1", Name: `a"b`, NodeBinary: node}, "name"},
		{"no node", osimage.Options{Version: "1"}, "edgefleet-node"},
		{"node not ELF", osimage.Options{Version: "1", NodeBinary: notELF}, "edgefleet-node binary"},
		{"unknown variant", osimage.Options{Version: "1", Variant: "fedora", NodeBinary: node}, "unknown variant"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.CacheDir = t.TempDir()
			_, err := osimage.Build(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

// readFS returns the image's flattened files: regular files with their
// contents, symlinks as "-> target".
func readFS(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		case tar.TypeSymlink:
			files[h.Name] = []byte("-> " + h.Linkname)
		}
	}
}

func cpioNames(t *testing.T, initrd string) map[string]bool {
	t.Helper()
	f, err := os.Open(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	names := map[string]bool{}
	for _, n := range strings.Fields(string(out)) {
		names[n] = true
	}
	return names
}
