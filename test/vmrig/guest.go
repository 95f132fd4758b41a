package vmrig

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/debpkg"
	"github.com/edgefleet/edgefleet/internal/osimage"
)

// Guest assets from Debian's archive (internal/debpkg, cached under
// ~/.cache/edgefleet/deb): the cloud kernel and busybox-static.
const (
	KernelMetaPackage = "linux-image-cloud-amd64"
	BusyboxPackage    = "busybox-static"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	// Vmlinuz is the kernel image.
	Vmlinuz string
	// Version is its release (6.1.0-57-cloud-amd64).
	Version string
	// ModulesDir is lib/modules/<version>.
	ModulesDir string
}

// DebianKernel fetches the kernel the metapackage linux-image-cloud-amd64
// points at (a test skips when apt cannot fetch it).
func DebianKernel(t testing.TB) Kernel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pkg, err := osimage.CloudKernelPackage(ctx)
	if err != nil {
		t.Skipf("cannot resolve %s: %v", KernelMetaPackage, err)
	}
	dirs, err := debpkg.Fetch(ctx, pkg)
	if err != nil {
		t.Skipf("cannot fetch the Debian kernel: %v", err)
	}
	k, err := kernelIn(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func kernelIn(root string) (Kernel, error) {
	m, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(m) != 1 {
		return Kernel{}, fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", root, len(m))
	}
	v := strings.TrimPrefix(filepath.Base(m[0]), "vmlinuz-")
	return Kernel{Vmlinuz: m[0], Version: v, ModulesDir: filepath.Join(root, "lib", "modules", v)}, nil
}

// Busybox fetches busybox-static and returns the path of its binary.
func Busybox(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dirs, err := debpkg.Fetch(ctx, BusyboxPackage)
	if err != nil {
		t.Skipf("cannot fetch busybox-static: %v", err)
	}
	return filepath.Join(dirs[0], "bin", "busybox")
}

// Initramfs describes a busybox initramfs.
type Initramfs struct {
	// Init is the /init shell script (busybox sh; every applet is linked in
	// /bin).
	Init string
	// Modules are kernel module names loaded, with their dependencies in
	// order, by /init's "loadmods" helper: the script calls it first.
	Modules []string
	// Files are extra files (path in the initramfs → content).
	Files map[string][]byte
}

// Modules a guest typically needs with the rig's devices: the CD-ROM (IDE,
// ISO 9660), virtio disks and NIC, squashfs and vfat.
var (
	CDROMModules   = []string{"ata_piix", "sr_mod", "isofs"}
	VirtioModules  = []string{"virtio_pci", "virtio_blk", "virtio_net"}
	FSModules      = []string{"squashfs", "loop", "overlay", "vfat", "nls_cp437", "nls_iso8859_1"}
	DefaultModules = append(append(append([]string{}, CDROMModules...), VirtioModules...), FSModules...)
)

// BuildInitramfs writes a gzip'd newc cpio with busybox-static, the
// modules of spec (from k) and its /init to path.
func BuildInitramfs(t testing.TB, k Kernel, spec Initramfs, path string) {
	t.Helper()
	data, err := initramfs(Busybox(t), k, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The applets /init may use; linked to /bin/busybox.
var applets = []string{"sh", "mount", "umount", "cat", "echo", "ls", "mkdir", "insmod", "poweroff", "reboot", "sleep",
	"grep", "ip", "wget", "nc", "findfs", "switch_root", "losetup", "mdev", "uname", "head", "tail", "tr", "printf", "dd", "sed", "test", "["}

func initramfs(busybox string, k Kernel, spec Initramfs) ([]byte, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	w := osimage.NewArchive()
	for _, d := range []string{"bin", "dev", "proc", "sys", "mnt", "run", "tmp", "lib", "lib/modules"} {
		w.Dir(d)
	}
	// The kernel opens /dev/console for init before anything is mounted.
	w.CharDev("dev/console", 0o600, 5, 1)
	w.File("bin/busybox", 0o755, bb)
	for _, a := range applets {
		w.Symlink("bin/"+a, "busybox")
	}
	mods, err := resolveModules(k.ModulesDir, spec.Modules)
	if err != nil {
		return nil, err
	}
	var load strings.Builder
	load.WriteString("loadmods() {\n")
	for i, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("lib/modules/%02d-%s", i, filepath.Base(m))
		w.File(name, 0o644, b)
		fmt.Fprintf(&load, "  insmod /%s 2>/dev/null\n", name)
	}
	load.WriteString("  :\n}\n")
	init := spec.Init
	if !strings.HasPrefix(init, "#!") {
		init = "#!/bin/sh\n" + init
	}
	// loadmods goes right after the shebang line.
	nl := strings.IndexByte(init, '\n') + 1
	init = init[:nl] + "export PATH=/bin\n" + load.String() + init[nl:]
	w.File("init", 0o755, []byte(init))
	names := make([]string, 0, len(spec.Files))
	for n := range spec.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w.File(strings.TrimPrefix(n, "/"), 0o644, spec.Files[n])
	}
	return w.Initramfs()
}

// resolveModules finds each module and its dependencies (read from the
// .modinfo section: the package ships no modules.dep, depmod runs at
// install time) and returns their paths, dependencies first. Modules built
// into the kernel are skipped.
func resolveModules(dir string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	paths := map[string]string{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			paths[normMod(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	builtin, _ := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	isBuiltin := func(n string) bool {
		for _, l := range strings.Split(string(builtin), "\n") {
			if normMod(strings.TrimSuffix(filepath.Base(l), ".ko")) == n {
				return true
			}
		}
		return false
	}
	var order []string
	seen := map[string]bool{}
	var visit func(n string) error
	visit = func(n string) error {
		n = normMod(n)
		if seen[n] {
			return nil
		}
		seen[n] = true
		p, ok := paths[n]
		if !ok {
			if isBuiltin(n) {
				return nil
			}
			return fmt.Errorf("kernel module %s is neither in %s nor built in", n, dir)
		}
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func normMod(n string) string { return strings.ReplaceAll(n, "-", "_") }

func moduleDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
