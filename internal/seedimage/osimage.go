package seedimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Bootable media from an OS image (docs/os.md, docs/os/seed-media.md): the
// OCI image's flattened filesystem becomes /edgefleet/rootfs.squashfs, its
// /boot/vmlinuz and /boot/initrd boot it live through GRUB, and the node
// config sits at the medium's root. Built with mksquashfs (squashfs-tools),
// grub-mkrescue (grub-common, grub-pc-bin, grub-efi-amd64-bin, mtools,
// xorriso) for ISOs and grub-mkstandalone, mkfs.vfat (dosfstools), mtools,
// sgdisk, mkfs.ext4 for raw disks; nothing is mounted.
const (
	// LiveVolumeID labels bootable media: the ISO volume, and the GPT
	// partition and ext4 filesystem of raw disks. The OS image's initrd
	// finds its root image on the medium with this label.
	LiveVolumeID = "EDGEFLEET"
	// RootfsPath is the root image on the medium.
	RootfsPath = "/edgefleet/rootfs.squashfs"
	// Contract paths in the OS image.
	OSKernelPath = "/boot/vmlinuz"
	OSInitrdPath = "/boot/initrd"
	OSAgentPath  = "/usr/bin/edgefleet-node"
	// LiveKernelArgs boot the live system (contract §3).
	LiveKernelArgs = "edgefleet.mode=live edgefleet.slot=live edgefleet.root=" + LiveVolumeID + ":" + RootfsPath + " console=ttyS0 no_timer_check"
	// efiPartitionBytes is the EFI system partition of raw media.
	efiPartitionBytes = 32 << 20
	efiFSType         = "EF00"
)

// liveGrubCfg boots the live system on the serial console and the screen.
const liveGrubCfg = `serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
set default=0
menuentry "edgefleet live" {
	linux /boot/vmlinuz ` + LiveKernelArgs + `
	initrd /boot/initrd
}
`

// rawEFIGrubCfg is embedded in the raw disk's BOOTX64.EFI: it finds the
// medium's partition and reads the same grub.cfg as the ISO.
const rawEFIGrubCfg = `search --no-floppy --label ` + LiveVolumeID + ` --set=root
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
`

// liveISOModules are the GRUB modules on the ISO for both platforms.
const liveISOModules = "linux normal iso9660 part_gpt part_msdos part_acorn part_amiga part_bsd part_dfly part_dvh part_plan part_sun part_sunpc fat ext2 search search_label search_fs_uuid search_fs_file configfile echo test serial terminal terminfo gzio all_video sleep reboot halt"

// rawEFIModules are built into BOOTX64.EFI of raw media.
const rawEFIModules = "part_gpt part_msdos fat ext2 search search_label search_fs_uuid configfile linux normal echo test serial terminal terminfo gzio all_video efi_gop sleep reboot halt"

// OSImageError is an OS image that cannot become media (not pullable, wrong
// digest, missing contract files): the spec must change.
type OSImageError struct{ Msg string }

func (e OSImageError) Error() string { return e.Msg }

// osImage is a pulled OS image, unpacked into work.
type osImage struct {
	Digest   string
	Kernel   string
	Initrd   string
	RootTar  string
	Name     string
	Version  string
	tarBytes int64
}

// pullOSImage pulls ref (anonymously, under src's network policy), checks
// its platform and the contract's files and writes its flattened
// filesystem as a tar plus the kernel and initrd into work.
func pullOSImage(ctx context.Context, ref string, src Sources, limit int64, work string) (*osImage, error) {
	r, err := name.ParseReference(strings.TrimPrefix(ref, ociPrefix))
	if err != nil {
		return nil, OSImageError{fmt.Sprintf("osImage %q is not a valid OCI image reference (registry/repository:tag or registry/repository@sha256:…): %v", ref, err)}
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous),
		remote.WithTransport(src.transport()), remote.WithPlatform(linuxAMD64))
	if err != nil {
		return nil, fmt.Errorf("pulling osImage %s: %w", ref, err)
	}
	dg, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("osImage %s: %w", ref, err)
	}
	// remote checks a pinned manifest against its digest already; say so
	// in the spec's words if it ever did not.
	if d, ok := r.(name.Digest); ok && d.DigestStr() != dg.String() {
		return nil, OSImageError{fmt.Sprintf("osImage %s has digest %s, not the pinned %s: the registry served another image", ref, dg, d.DigestStr())}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of osImage %s: %w", ref, err)
	}
	if cfg.OS != "" && (cfg.OS != "linux" || cfg.Architecture != "amd64") {
		return nil, OSImageError{fmt.Sprintf("osImage %s is for %s/%s: seed media boot linux/amd64 machines", ref, cfg.OS, cfg.Architecture)}
	}
	o := &osImage{Digest: dg.String(), RootTar: filepath.Join(work, "rootfs.tar"),
		Kernel: filepath.Join(work, "vmlinuz"), Initrd: filepath.Join(work, "initrd")}
	if cfg.Config.Labels != nil {
		o.Name, o.Version = cfg.Config.Labels["io.edgefleet.os.name"], cfg.Config.Labels["io.edgefleet.os.version"]
	}
	if err := o.unpack(ctx, img, ref, limit); err != nil {
		return nil, err
	}
	return o, nil
}

var linuxAMD64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// unpack writes the flattened filesystem to RootTar (bounded by limit)
// while it takes the kernel and initrd out of it. A symlink at a contract
// path (boot/vmlinuz → vmlinuz-6.1.0-…) is followed within the image.
func (o *osImage) unpack(ctx context.Context, img v1.Image, ref string, limit int64) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	f, err := os.OpenFile(o.RootTar, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cw := &countingWriter{w: f, limit: limit}
	tee := io.TeeReader(ctxReader{ctx: ctx, r: rc}, cw)
	want := map[string]string{clean(OSKernelPath): o.Kernel, clean(OSInitrdPath): o.Initrd}
	found := map[string]bool{}
	links := map[string]string{}
	hasAgent := false
	tr := tar.NewReader(tee)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if cw.err != nil {
			return OSImageError{fmt.Sprintf("osImage %s: %v", ref, cw.err)}
		}
		if err != nil {
			return fmt.Errorf("reading the layers of osImage %s: %w", ref, err)
		}
		p := clean(h.Name)
		if p == clean(OSAgentPath) {
			hasAgent = true
		}
		to, ok := want[p]
		if !ok {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if err := writeFrom(ctx, to, tr, limit, "", p+" in osImage "+ref); err != nil {
				return err
			}
			found[p] = true
		case tar.TypeSymlink, tar.TypeLink:
			target := h.Linkname
			if h.Typeflag == tar.TypeSymlink && !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir("/"+p), target)
			}
			links[p] = clean(target)
		}
	}
	// The tar's end-of-archive blocks are in the stream after the last
	// entry: mksquashfs wants them.
	if _, err := io.Copy(io.Discard, tee); err != nil && cw.err == nil {
		return fmt.Errorf("reading the layers of osImage %s: %w", ref, err)
	}
	if cw.err != nil {
		return OSImageError{fmt.Sprintf("osImage %s: %v", ref, cw.err)}
	}
	if err := f.Close(); err != nil {
		return err
	}
	for p, target := range links {
		if found[p] {
			continue
		}
		if err := extractFromTar(ctx, o.RootTar, target, want[p], limit); err != nil {
			return OSImageError{fmt.Sprintf("osImage %s: %s is a link to %s, which cannot be read: %v", ref, "/"+p, "/"+target, err)}
		}
		found[p] = true
	}
	var missing []string
	for _, p := range []string{OSKernelPath, OSInitrdPath} {
		if !found[clean(p)] {
			missing = append(missing, p)
		}
	}
	if !hasAgent {
		missing = append(missing, OSAgentPath)
	}
	if len(missing) > 0 {
		return OSImageError{fmt.Sprintf("osImage %s is not an edgefleet OS image: it has no %s (an OS image carries its kernel at %s, its initrd at %s and the node agent at %s; see docs/os.md)", ref, strings.Join(missing, ", "), OSKernelPath, OSInitrdPath, OSAgentPath)}
	}
	o.tarBytes = cw.n
	return nil
}

// extractFromTar writes the regular file at p in the tar file to to,
// following at most a few links.
func extractFromTar(ctx context.Context, tarPath, p, to string, limit int64) error {
	for hops := 0; hops < 8; hops++ {
		f, err := os.Open(tarPath)
		if err != nil {
			return err
		}
		tr := tar.NewReader(f)
		next := ""
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				f.Close()
				return errors.New("no such file")
			}
			if err != nil {
				f.Close()
				return err
			}
			if clean(h.Name) != p {
				continue
			}
			if h.Typeflag == tar.TypeReg {
				err := writeFrom(ctx, to, tr, limit, "", p)
				f.Close()
				return err
			}
			if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
				f.Close()
				return errors.New("not a regular file")
			}
			next = h.Linkname
			if h.Typeflag == tar.TypeSymlink && !strings.HasPrefix(next, "/") {
				next = path.Join(path.Dir("/"+p), next)
			}
			break
		}
		f.Close()
		p = clean(next)
	}
	return errors.New("too many links")
}

// clean is a tar entry's path relative to the image root ("boot/vmlinuz").
func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

type countingWriter struct {
	w     io.Writer
	n     int64
	limit int64
	err   error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n+int64(len(p)) > c.limit {
		c.err = fmt.Errorf("its filesystem is larger than the %d bytes allowed", c.limit)
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// buildOSMedia builds bootable media of kind from the OS image o and the
// seed files in stage (which it fills with the boot files), into out.
func buildOSMedia(ctx context.Context, kind string, o *osImage, stage, work, out string) error {
	mksquashfs, err := lookSbin("mksquashfs", "squashfs-tools")
	if err != nil {
		return err
	}
	for _, d := range []string{"boot/grub", "edgefleet"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Rename(o.Kernel, filepath.Join(stage, "boot", "vmlinuz")); err != nil {
		return err
	}
	if err := os.Rename(o.Initrd, filepath.Join(stage, "boot", "initrd")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "boot", "grub", "grub.cfg"), []byte(liveGrubCfg), 0o644); err != nil {
		return err
	}
	// mksquashfs reads the tar itself: ownership, modes, links and device
	// nodes go into the root image exactly, and nothing of the (hostile)
	// image is ever written to the manager's filesystem.
	tarFile, err := os.Open(o.RootTar)
	if err != nil {
		return err
	}
	sq := exec.CommandContext(ctx, mksquashfs, "-", filepath.Join(stage, "edgefleet", "rootfs.squashfs"),
		"-tar", "-noappend", "-quiet", "-no-progress", "-comp", "zstd")
	sq.Stdin = tarFile
	outb, err := sq.CombinedOutput()
	tarFile.Close()
	os.Remove(o.RootTar)
	if err != nil {
		return fmt.Errorf("mksquashfs of the OS image's filesystem: %v: %s", err, lastLines(string(outb), 5))
	}
	if kind == KindRaw {
		return buildLiveRaw(ctx, stage, work, out)
	}
	return buildLiveISO(ctx, stage, out)
}

// buildLiveISO writes a hybrid ISO (BIOS El Torito + UEFI, bootable from a
// CD or as a disk) with grub-mkrescue.
func buildLiveISO(ctx context.Context, stage, out string) error {
	mkrescue, err := exec.LookPath("grub-mkrescue")
	if err != nil {
		return errors.New("grub-mkrescue is not installed on the manager's host: install the Debian packages grub-common, grub-pc-bin, grub-efi-amd64-bin, mtools and xorriso")
	}
	for _, d := range []string{"/usr/lib/grub/i386-pc", "/usr/lib/grub/x86_64-efi"} {
		if _, err := os.Stat(d); err != nil {
			return fmt.Errorf("%s is missing on the manager's host: install the Debian packages grub-pc-bin and grub-efi-amd64-bin", d)
		}
	}
	// Only the modules the live entry needs (and no locales, fonts or
	// themes) go onto the medium: the full set doubles the ISO's size.
	return run(ctx, mkrescue, "--install-modules="+liveISOModules, "--locales=", "--fonts=", "--themes=",
		"-o", out, stage, "--", "-volid", LiveVolumeID)
}

// buildLiveRaw writes a GPT disk: an EFI system partition with a
// standalone GRUB, and a partition labelled EDGEFLEET with the medium's
// files (the same tree as the ISO). It boots UEFI.
func buildLiveRaw(ctx context.Context, stage, work, out string) error {
	mkstandalone, err := exec.LookPath("grub-mkstandalone")
	if err != nil {
		return errors.New("grub-mkstandalone is not installed on the manager's host: install the Debian packages grub-common and grub-efi-amd64-bin")
	}
	sgdisk, err := lookSbin("sgdisk", "gdisk")
	if err != nil {
		return err
	}
	mkfsExt4, err := lookSbin("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	mkfsVfat, err := lookSbin("mkfs.vfat", "dosfstools")
	if err != nil {
		return err
	}
	mcopy, err := exec.LookPath("mcopy")
	if err != nil {
		return errors.New("mcopy is not installed on the manager's host: install the Debian package mtools")
	}
	embedded := filepath.Join(work, "embedded.cfg")
	if err := os.WriteFile(embedded, []byte(rawEFIGrubCfg), 0o644); err != nil {
		return err
	}
	efiBin := filepath.Join(work, "BOOTX64.EFI")
	if err := run(ctx, mkstandalone, "--format=x86_64-efi", "--output="+efiBin,
		"--modules="+rawEFIModules, "--install-modules="+rawEFIModules, "--locales=", "--fonts=", "--themes=",
		"boot/grub/grub.cfg="+embedded); err != nil {
		return err
	}
	esp := filepath.Join(work, "esp.vfat")
	if err := truncate(esp, efiPartitionBytes); err != nil {
		return err
	}
	if err := run(ctx, mkfsVfat, "-n", "EF_EFI", esp); err != nil {
		return err
	}
	if err := run(ctx, mcopy, "-i", esp, "-s", "-D", "o", efiTree(work, efiBin), "::/"); err != nil {
		return err
	}
	need, err := fsSizeFor(stage)
	if err != nil {
		return err
	}
	// fsSizeFor doubles for config-only media; a root image needs its
	// size plus ext4's metadata (the medium is read-only: no journal, no
	// reserved blocks).
	need = max(minRawFSBytes, need/2+need/64+(8<<20))
	need = (need + (1 << 20) - 1) &^ ((1 << 20) - 1)
	espStart, espSectors := int64(alignSectors), int64(efiPartitionBytes/sectorSize)
	dataStart, dataSectors := espStart+espSectors, need/sectorSize
	if err := truncate(out, (dataStart+dataSectors+alignSectors)*sectorSize); err != nil {
		return err
	}
	if err := run(ctx, sgdisk, "-o",
		"-n", partArg(1, espStart, espSectors), "-c", "1:EF_EFI", "-t", "1:"+efiFSType,
		"-n", partArg(2, dataStart, dataSectors), "-c", "2:"+LiveVolumeID, "-t", "2:"+linuxFSType, out); err != nil {
		return err
	}
	data := filepath.Join(work, "live.ext4")
	if err := truncate(data, dataSectors*sectorSize); err != nil {
		return err
	}
	if err := run(ctx, mkfsExt4, "-q", "-F", "-L", LiveVolumeID, "-m", "0", "-O", "^has_journal", "-d", stage, "-E", "root_owner=0:0", data); err != nil {
		return fmt.Errorf("the %s partition (%d bytes) cannot hold the medium's files: %w", LiveVolumeID, dataSectors*sectorSize, err)
	}
	if err := copyAt(out, esp, espStart*sectorSize); err != nil {
		return err
	}
	return copyAt(out, data, dataStart*sectorSize)
}

// efiTree lays out EFI/BOOT/BOOTX64.EFI under work/esp-tree for mcopy -s.
func efiTree(work, efiBin string) string {
	root := filepath.Join(work, "esp-tree")
	dir := filepath.Join(root, "EFI", "BOOT")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.Rename(efiBin, filepath.Join(dir, "BOOTX64.EFI"))
	}
	return filepath.Join(root, "EFI")
}
