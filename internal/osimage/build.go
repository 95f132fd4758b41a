// Package osimage builds edgefleet's reference OS image (docs/os.md): an OCI
// image whose filesystem is the root of the OS, with the kernel and the
// initramfs (holding the edgefleet boot init) under /boot, edgefleet-node
// started by the OS's init, the installer's tools and a standalone GRUB EFI
// binary. Everything comes from Debian's archive (internal/debpkg); the
// result is an OCI image layout cached under ~/.cache/edgefleet/os/, keyed
// by every input, so an unchanged build is a cache hit, and the same inputs
// always give the same image digest.
package osimage

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/debpkg"
)

// builderRevision changes whenever the builder lays out images differently,
// so older cache entries are not reused. The key also hashes the running
// program (see key), which covers changes to the builder's Go code.
const builderRevision = "1"

// Labels on the image config (contract §1).
const (
	LabelName    = "io.edgefleet.os.name"
	LabelVersion = "io.edgefleet.os.version"
)

// Paths inside the image (contract §1).
const (
	KernelPath    = "boot/vmlinuz"
	InitrdPath    = "boot/initrd"
	NodePath      = "usr/bin/edgefleet-node"
	BootEFIPath   = "usr/lib/edgefleet/grub/bootx64.efi"
	OSReleasePath = "etc/os-release"
)

// BootBIOSCorePath and BootBIOSBootPath are GRUB for BIOS firmware
// (i386-pc): the installer embeds core.img in the disk's BIOS boot
// partition and writes boot.img to its MBR (docs/os.md).
const (
	BootBIOSCorePath = "usr/lib/edgefleet/grub/i386-pc/core.img"
	BootBIOSBootPath = "usr/lib/edgefleet/grub/i386-pc/boot.img"
)

// Variants the builder knows.
const (
	VariantTest    = "test"
	VariantSystemd = "systemd"
)

// DefaultName is the os-release NAME of the test variant.
const DefaultName = "edgefleet-test-os"

//go:embed files
var files embed.FS

// Options say what to build.
type Options struct {
	// Variant is "test" (the default): Debian's cloud kernel, a busybox
	// userland with busybox init, edgefleet-node and the installer's tools;
	// or "systemd": the same kernel and initrd with a Debian userland run
	// by systemd, edgefleet-node started by its unit.
	Variant string
	// Name and Version become os-release NAME and VERSION_ID and the
	// image labels. Version is required.
	Name, Version string
	// Broken builds an image whose boot init panics at once (to test
	// boot assessment and rollback).
	Broken bool
	// NodeBinary is the edgefleet-node (linux/amd64) put into the image.
	NodeBinary string
	// KernelPackage is the Debian kernel package; empty means the one
	// linux-image-cloud-amd64 currently depends on.
	KernelPackage string
	// CacheDir holds built images; empty means $EDGEFLEET_OS_CACHE or
	// ~/.cache/edgefleet/os.
	CacheDir string
	// Log receives one line per build step (nil: discarded).
	Log io.Writer
}

// Result is a built (or cached) image.
type Result struct {
	// Dir holds the build: oci/ (the OCI image layout) and copies of the
	// kernel, initrd and bootx64.efi for tests that boot them directly.
	Dir string
	// Layout is Dir/oci.
	Layout string
	// Digest is the image manifest's digest ("sha256:…").
	Digest string
	// Cached says the build was a cache hit.
	Cached bool
	// Kernel, Initrd and BootEFI are host paths of the image's files.
	Kernel, Initrd, BootEFI string
}

var (
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$`)
)

func (o *Options) validate() error {
	if o.Variant == "" {
		o.Variant = VariantTest
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	switch o.Variant {
	case VariantTest:
	case VariantSystemd:
	default:
		return fmt.Errorf("unknown variant %q: want test or systemd", o.Variant)
	}
	if !versionRE.MatchString(o.Version) {
		return fmt.Errorf("version %q: want 1-64 characters of letters, digits and . _ + ~ - (it becomes os-release VERSION_ID)", o.Version)
	}
	if !nameRE.MatchString(o.Name) {
		return fmt.Errorf("name %q: want 1-64 characters of letters, digits, spaces and . _ + -", o.Name)
	}
	if o.NodeBinary == "" {
		return errors.New("no edgefleet-node binary given: build one for linux/amd64 (make build) and pass its path")
	}
	f, err := elf.Open(o.NodeBinary)
	if err != nil {
		return fmt.Errorf("edgefleet-node binary %s: %w", o.NodeBinary, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("edgefleet-node binary %s is for %v: the image is linux/amd64", o.NodeBinary, f.Machine)
	}
	if o.CacheDir == "" {
		o.CacheDir = os.Getenv("EDGEFLEET_OS_CACHE")
	}
	if o.CacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return err
		}
		o.CacheDir = filepath.Join(home, ".cache", "edgefleet", "os")
	}
	return nil
}

// Debian packages of the test variant: tools the node's installer runs
// (with the libraries they link), and busybox for everything else.
var (
	toolPackages = []string{"busybox-static", "gdisk", "e2fsprogs", "dosfstools", "squashfs-tools", "grub-common", "util-linux", "mount"}
	libPackages  = []string{"libc6", "libgcc-s1", "libstdc++6", "libuuid1", "libpopt0", "libblkid1", "libmount1", "libsmartcols1",
		"libselinux1", "libpcre2-8-0", "libext2fs2", "libcom-err2", "zlib1g", "liblzma5", "liblzo2-2",
		"liblz4-1", "libzstd1", "libdevmapper1.02.1", "libudev1"}
	// toolFiles are copied into the image with their libraries.
	toolFiles = []string{
		"/sbin/sgdisk", "/sbin/mkfs.ext4", "/sbin/mke2fs", "/sbin/e2fsck", "/sbin/fsck.ext4", "/sbin/tune2fs", "/sbin/resize2fs",
		"/sbin/e2label", "/etc/mke2fs.conf", "/sbin/mkfs.vfat", "/sbin/mkfs.fat", "/sbin/fsck.vfat", "/usr/bin/mksquashfs", "/usr/bin/sqfstar",
		"/usr/bin/unsquashfs", "/usr/bin/grub-editenv", "/sbin/blkid", "/sbin/wipefs",
		"/bin/mount", "/bin/umount", "/sbin/losetup",
	}
	// grubModules go into bootx64.efi (contract §1 and what grub.cfg uses).
	grubModules = []string{"part_gpt", "part_msdos", "fat", "ext2", "squash4", "iso9660", "loopback", "search", "search_label",
		"search_fs_file", "search_fs_uuid", "configfile", "linux", "normal", "loadenv", "test", "echo", "sleep", "reboot", "halt",
		"gzio", "xzio", "efi_gop", "efi_uga", "all_video", "serial", "terminal", "regexp", "true", "cat", "ls"}
	// grubBIOSModules go into the BIOS core.img: what the embedded config
	// and grub.cfg use, no more (core.img must fit the 1007 sectors before
	// the first partition).
	grubBIOSModules = []string{"biosdisk", "part_gpt", "part_msdos", "ext2", "search", "search_label", "configfile", "linux",
		"normal", "loadenv", "test", "echo", "sleep", "reboot", "halt", "serial", "terminal", "true"}
)

// Build builds the image o describes, or returns the cached one.
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	b := &builder{o: o, start: time.Now()}
	return b.run(ctx)
}

type builder struct {
	o     Options
	start time.Time

	kernelDir, busyboxDir string
	debDirs               []string
	grubVersion           string
}

func (b *builder) logf(format string, args ...any) {
	if b.o.Log != nil {
		fmt.Fprintf(b.o.Log, "os-image: %6.1fs %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

func (b *builder) run(ctx context.Context) (*Result, error) {
	if err := b.fetch(ctx); err != nil {
		return nil, err
	}
	key, err := b.key()
	if err != nil {
		return nil, err
	}
	suffix := ""
	if b.o.Broken {
		suffix = "-broken"
	}
	prefix := fmt.Sprintf("%s-%s%s-", b.o.Variant, b.o.Version, suffix)
	dir := filepath.Join(b.o.CacheDir, prefix+key[:16])
	defer pruneCache(b.o.CacheDir, prefix, dir, time.Now())
	if r, err := loadResult(dir); err == nil {
		b.logf("cache hit %s (%s)", dir, r.Digest)
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // marks it used, so pruning keeps it
		r.Cached = true
		return r, nil
	}
	if err := os.MkdirAll(b.o.CacheDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(b.o.CacheDir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := b.assemble(ctx, tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if r, lerr := loadResult(dir); lerr == nil { // a concurrent build finished first
			return r, nil
		}
		return nil, err
	}
	r, err := loadResult(dir)
	if err != nil {
		return nil, err
	}
	b.logf("built %s (%s)", dir, r.Digest)
	return r, nil
}

// fetch gets the Debian packages (cached by version).
func (b *builder) fetch(ctx context.Context) error {
	kpkg := b.o.KernelPackage
	if kpkg == "" {
		var err error
		if kpkg, err = CloudKernelPackage(ctx); err != nil {
			return err
		}
	}
	// The kernel comes first and busybox-static second (the initrd's
	// userland, in both variants); the rest is the variant's userland.
	pkgs := append([]string{kpkg}, toolPackages...)
	if b.o.Variant == VariantSystemd {
		closure, err := dependencyClosure(ctx, systemdPackages)
		if err != nil {
			return err
		}
		pkgs = append([]string{kpkg, "busybox-static"}, closure...)
	} else {
		pkgs = append(pkgs, libPackages...)
	}
	b.logf("fetching %d Debian packages (kernel %s)", len(pkgs), kpkg)
	dirs, err := debpkg.Fetch(ctx, pkgs...)
	if err != nil {
		return err
	}
	b.kernelDir, b.busyboxDir, b.debDirs = dirs[0], dirs[1], dirs[1:]
	if b.o.Variant == VariantSystemd {
		b.debDirs = dirs[2:]
	}
	out, err := exec.CommandContext(ctx, "grub-mkimage", "--version").Output()
	if err != nil {
		return fmt.Errorf("grub-mkimage (Debian package grub-common, with grub-efi-amd64-bin) is needed to build bootx64.efi: %w", err)
	}
	b.grubVersion = strings.TrimSpace(string(out))
	if _, err := os.Stat(grubEFIModules); err != nil {
		return fmt.Errorf("GRUB's x86_64-efi modules are missing (%w): install Debian's grub-efi-amd64-bin (hack/install-deps.sh)", err)
	}
	if _, err := os.Stat(grubBIOSModulesDir); err != nil {
		return fmt.Errorf("GRUB's i386-pc modules are missing (%w): install Debian's grub-pc-bin (hack/install-deps.sh)", err)
	}
	return nil
}

const (
	grubEFIModules     = "/usr/lib/grub/x86_64-efi"
	grubBIOSModulesDir = "/usr/lib/grub/i386-pc"
)

// CloudKernelPackage asks apt which kernel package linux-image-cloud-amd64
// stands for (the reference image and the VM test rig boot that kernel).
func CloudKernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", "linux-image-cloud-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache show linux-image-cloud-amd64: %w (run apt-get update, or pass a kernel package)", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		deps, ok := strings.CutPrefix(line, "Depends: ")
		if !ok {
			continue
		}
		for _, d := range strings.Split(deps, ",") {
			d = strings.Fields(strings.TrimSpace(d))[0]
			if strings.HasPrefix(d, "linux-image-") {
				return d, nil
			}
		}
	}
	return "", errors.New("linux-image-cloud-amd64 depends on no linux-image-* package: pass a kernel package")
}

// key hashes every input of the build.
func (b *builder) key() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "rev %s\nvariant %s\nname %s\nversion %s\nbroken %v\ngrub %s\n", builderRevision, b.o.Variant, b.o.Name, b.o.Version, b.o.Broken, b.grubVersion)
	for _, d := range append([]string{b.kernelDir}, b.debDirs...) {
		fmt.Fprintf(h, "deb %s\n", filepath.Base(d))
	}
	fmt.Fprintf(h, "modules %s\ntools %s\ngrub %s\n", strings.Join(initrdModules, ","), strings.Join(toolFiles, ","), strings.Join(grubModules, ",")+" bios "+strings.Join(grubBIOSModules, ","))
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		fmt.Fprintf(h, "file %s %x\n", p, sha256.Sum256(data))
		return err
	})
	if err != nil {
		return "", err
	}
	f, err := os.Open(b.o.NodeBinary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	nh := sha256.New()
	if _, err := io.Copy(nh, f); err != nil {
		return "", err
	}
	fmt.Fprintf(h, "node %x\n", nh.Sum(nil))
	// The builder itself: the program running this code (hack/os-image, a
	// test binary) changes when the builder's code does.
	if exe, err := os.Executable(); err == nil {
		if sum, err := fileSHA256(exe); err == nil {
			fmt.Fprintf(h, "builder %s\n", sum)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// epoch is every file's mtime and the image's creation time: builds are
// reproducible, and the version, not the date, tells images apart.
var epoch = time.Unix(0, 0).UTC()

func (b *builder) assemble(ctx context.Context, dir string) error {
	kmods, err := loadKernelModules(b.kernelDir)
	if err != nil {
		return err
	}
	b.logf("initrd: kernel %s", kmods.version)
	initrd := filepath.Join(dir, "initrd")
	if err := b.writeInitrd(kmods, initrd); err != nil {
		return fmt.Errorf("building the initrd: %w", err)
	}
	efi := filepath.Join(dir, "bootx64.efi")
	b.logf("bootx64.efi: grub-mkimage")
	if err := buildBootEFI(ctx, dir, efi); err != nil {
		return err
	}
	b.logf("BIOS core.img: grub-mkimage")
	if err := BuildBootBIOS(ctx, dir); err != nil {
		return err
	}
	kernels, err := filepath.Glob(filepath.Join(b.kernelDir, "boot", "vmlinuz-*"))
	if err != nil || len(kernels) != 1 {
		return fmt.Errorf("kernel package %s: want one boot/vmlinuz-*, found %v", b.kernelDir, kernels)
	}
	if err := copyFile(kernels[0], filepath.Join(dir, "vmlinuz")); err != nil {
		return err
	}
	b.logf("rootfs")
	t, err := b.rootfs(filepath.Join(dir, "vmlinuz"), initrd, efi)
	if err != nil {
		return fmt.Errorf("assembling the root filesystem: %w", err)
	}
	b.logf("OCI image: %d files", len(t.entries))
	digest, err := writeImage(t, filepath.Join(dir, "oci"), b.o)
	if err != nil {
		return fmt.Errorf("writing the OCI image: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "digest"), []byte(digest+"\n"), 0o644)
}

// writeInitrd writes the gzip-compressed initramfs: busybox, the boot init
// and the kernel modules it loads (in dependency order, listed in
// /etc/edgefleet/modules).
func (b *builder) writeInitrd(k *kernelModules, out string) error {
	order, err := k.loadOrder(initrdModules)
	if err != nil {
		return err
	}
	t := newTree()
	for _, d := range []string{"proc", "sys", "run", "newroot", "tmp", "usr/bin", "usr/sbin"} {
		t.mkdirAll(d, 0o755)
	}
	t.addSymlink("bin", "usr/bin")
	t.addSymlink("sbin", "usr/sbin")
	t.addSymlink("lib", "usr/lib")
	t.addCharDev("dev/console", 0o600, 5, 1)
	t.addCharDev("dev/null", 0o666, 1, 3)
	t.addFile("usr/bin/busybox", 0o755, filepath.Join(b.busyboxDir, "bin", "busybox"))
	initScript, err := files.ReadFile("files/init")
	if err != nil {
		return err
	}
	t.addData("init", 0o755, initScript)
	for _, rel := range order {
		t.addFile("usr/lib/modules/"+k.version+"/"+rel, 0o644, filepath.Join(k.dir, rel))
	}
	t.addData("etc/edgefleet/modules", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	if b.o.Broken {
		t.addData("etc/edgefleet/broken", 0o644, []byte("built with --broken: the boot init panics\n"))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	if err := t.writeCpio(zw, epoch); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// BuildBootEFI writes the image's standalone GRUB EFI binary
// (/usr/lib/edgefleet/grub/bootx64.efi, contract §1) to out, for tests that
// assemble disks by hand. It needs grub-mkimage and Debian's
// grub-efi-amd64-bin modules.
func BuildBootEFI(ctx context.Context, out string) error {
	if _, err := os.Stat(grubEFIModules); err != nil {
		return fmt.Errorf("GRUB's x86_64-efi modules are missing (Debian package grub-efi-amd64-bin): %w", err)
	}
	dir, err := os.MkdirTemp("", "bootefi")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return buildBootEFI(ctx, dir, out)
}

// buildBootEFI makes the standalone GRUB EFI binary: its modules and an
// embedded config that hands over to EF_STATE's (else EF_RECOVERY's)
// grub/grub.cfg. GRUB runs an embedded config with its rescue parser (no
// "if", no comments), so the config searches EF_RECOVERY first and EF_STATE
// second: the later search wins when both exist. grub-mkimage builds it
// reproducibly (grub-mkstandalone would add a memdisk whose tar carries the
// build time).
func buildBootEFI(ctx context.Context, dir, out string) error {
	cfg, err := files.ReadFile("files/grub-embedded.cfg")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "grub-embedded.cfg")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	args := append([]string{"-d", grubEFIModules, "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-c", cfgPath, "-o", out}, grubModules...)
	if o, err := exec.CommandContext(ctx, "grub-mkimage", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkimage: %w\n%s", err, o)
	}
	return os.Remove(cfgPath)
}

// BuildBootBIOS writes GRUB for BIOS firmware to dir: core.img
// (grub-mkimage -O i386-pc with the same embedded config as bootx64.efi,
// so it hands over to the same grub.cfg and boot assessment) and Debian's
// boot.img (the MBR code that loads core.img). Needs grub-pc-bin.
func BuildBootBIOS(ctx context.Context, dir string) error {
	if _, err := os.Stat(grubBIOSModulesDir); err != nil {
		return fmt.Errorf("GRUB's i386-pc modules are missing (Debian package grub-pc-bin): %w", err)
	}
	cfg, err := files.ReadFile("files/grub-embedded.cfg")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "grub-embedded-bios.cfg")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	defer os.Remove(cfgPath)
	args := append([]string{"-d", grubBIOSModulesDir, "-O", "i386-pc", "-p", "/grub", "-c", cfgPath, "-o", filepath.Join(dir, "core.img")}, grubBIOSModules...)
	if o, err := exec.CommandContext(ctx, "grub-mkimage", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkimage -O i386-pc: %w\n%s", err, o)
	}
	return copyFile(filepath.Join(grubBIOSModulesDir, "boot.img"), filepath.Join(dir, "boot.img"))
}

// rootfs assembles the OS's root filesystem.
func (b *builder) rootfs(kernel, initrd, efi string) (*tree, error) {
	t := newTree()
	for _, top := range []string{"bin", "sbin", "lib", "lib64"} {
		t.mkdirAll("usr/"+top, 0o755)
		t.addSymlink(top, "usr/"+top)
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "oem", "mnt", "home", "var/lib", "var/log", "var/cache", "etc/edgefleet"} {
		t.mkdirAll(d, 0o755)
	}
	t.mkdirAll("root", 0o700)
	t.mkdirAll("tmp", 0o777|fs.ModeSticky)
	t.mkdirAll("var/tmp", 0o777|fs.ModeSticky)
	t.addSymlink("var/run", "../run")

	if b.o.Variant == VariantSystemd {
		if err := b.systemdUserland(t); err != nil {
			return nil, err
		}
	} else if err := b.busyboxUserland(t); err != nil {
		return nil, err
	}
	t.addFile(KernelPath, 0o644, kernel)
	t.addFile(InitrdPath, 0o644, initrd)
	t.addFile(BootEFIPath, 0o644, efi)
	t.addFile(BootBIOSCorePath, 0o644, filepath.Join(filepath.Dir(efi), "core.img"))
	t.addFile(BootBIOSBootPath, 0o644, filepath.Join(filepath.Dir(efi), "boot.img"))

	if err := addEmbedded(t, "files/edgefleet-node.run", "usr/lib/edgefleet/edgefleet-node.run", 0o755); err != nil {
		return nil, err
	}
	osRelease := fmt.Sprintf("NAME=%q\nID=edgefleet\nVERSION_ID=%q\nPRETTY_NAME=%q\nVARIANT_ID=%s\n", b.o.Name, b.o.Version, b.o.Name+" "+b.o.Version, b.o.Variant)
	t.addData("usr/lib/os-release", 0o644, []byte(osRelease))
	t.addSymlink(OSReleasePath, "../usr/lib/os-release")
	t.addData("etc/hostname", 0o644, []byte("edgefleet\n"))
	t.addData("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))
	if !t.has("etc/passwd") {
		t.addData("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
		t.addData("etc/group", 0o644, []byte("root:x:0:\ntty:x:5:\n"))
	}
	t.addData("etc/shadow", 0o600, []byte("root:*:1::::::\n"))
	t.addData("etc/fstab", 0o644, []byte("# mounts are made by the edgefleet boot init (docs/os.md)\n"))
	t.addData("etc/resolv.conf", 0o644, nil)
	return t, nil
}

func addEmbedded(t *tree, src, dst string, perm fs.FileMode) error {
	data, err := files.ReadFile(src)
	if err != nil {
		return err
	}
	t.addData(dst, perm, data)
	return nil
}

// busyboxUserland: the test variant's tools with their libraries, busybox
// for everything else, busybox init.
func (b *builder) busyboxUserland(t *tree) error {
	debs, err := indexDebs(b.debDirs)
	if err != nil {
		return err
	}
	for _, f := range toolFiles {
		if err := debs.install(t, f); err != nil {
			return err
		}
	}
	t.addFile(NodePath, 0o755, b.o.NodeBinary)
	if err := debs.installELFLibs(t, NodePath, b.o.NodeBinary); err != nil {
		return err
	}
	if err := b.busyboxApplets(t); err != nil {
		return err
	}
	for _, e := range []struct {
		src, dst string
		perm     fs.FileMode
	}{
		{"files/inittab", "etc/inittab", 0o644},
		{"files/rcS", "etc/init.d/rcS", 0o755},
		{"files/udhcpc.script", "usr/share/udhcpc/default.script", 0o755},
	} {
		if err := addEmbedded(t, e.src, e.dst, e.perm); err != nil {
			return err
		}
	}
	return nil
}

// busyboxApplets links every busybox applet the Debian tools do not provide.
func (b *builder) busyboxApplets(t *tree) error {
	bb := filepath.Join(b.busyboxDir, "bin", "busybox")
	t.addFile("usr/bin/busybox", 0o755, bb)
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("listing busybox applets: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		p := usrMerged(a)
		if !strings.HasPrefix(p, "usr/") || t.has(p) {
			continue
		}
		t.addSymlink(p, "/usr/bin/busybox")
	}
	return nil
}

// pruneAfter is how long a superseded build (same variant and version, other
// inputs) and an abandoned temporary build folder are kept.
const pruneAfter = 24 * time.Hour

// pruneCache deletes builds of the same variant and version that were made
// from other inputs and not used for pruneAfter (every code change makes a
// new build of ~70 MB), and temporary folders of interrupted builds. Recently
// used ones stay: another process may be booting them.
func pruneCache(cacheDir, prefix, keep string, now time.Time) {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		superseded := strings.HasPrefix(name, prefix) && len(name) == len(prefix)+16 && !strings.ContainsAny(name[len(prefix):], "-.")
		abandoned := strings.HasPrefix(name, ".build-")
		p := filepath.Join(cacheDir, name)
		if !e.IsDir() || p == keep || !(superseded || abandoned) {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > pruneAfter {
			os.RemoveAll(p)
		}
	}
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
