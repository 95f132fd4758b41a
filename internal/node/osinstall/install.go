// Package osinstall puts an edgefleet OS image on a disk and keeps it
// bootable: install (GPT layout, slot a + recovery, GRUB with boot
// assessment), upgrade (the passive slot, booted on trial), boot confirm,
// status and reset. The layout, kernel arguments and GRUB environment are the
// OS contract (docs/os.md, docs/os/install.md). It works on a block device or
// on a disk-image file (partitions reached through offset loop devices).
package osinstall

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Files on EF_OEM and directories on EF_PERSISTENT (contract §2).
const (
	OEMNodeConfig   = "edgefleet-node.yaml"
	OEMCloudConfigs = "cloud-config"
	// NodeStateDir is the node agent's state (identity, credential) on
	// EF_PERSISTENT; the running system sees it at /var/lib/edgefleet-node.
	NodeStateDir = "var-lib/edgefleet-node"
)

var persistentDirs = []string{"var-lib", "home", "etc-overlay/upper", "etc-overlay/work"}

// InstallOptions configure an installation.
type InstallOptions struct {
	// Device is the target: a block device or a disk-image file.
	Device string
	Pull   PullOptions
	// NodeConfig is written to EF_OEM/edgefleet-node.yaml: the installed
	// system registers with it.
	NodeConfig []byte
	// CloudConfigs are written to EF_OEM/cloud-config/<name>, applied at
	// first boot.
	CloudConfigs map[string][]byte
	// NodeState is the live system's node state directory (identity,
	// credential), copied to EF_PERSISTENT so the installed system is the
	// same machine to the manager.
	NodeState string
	Log       func(format string, args ...any)
	// Mounts is the mountinfo file checked for the booted disk
	// (/proc/self/mountinfo when empty).
	Mounts string
}

// Result says what was written where.
type Result struct {
	Image    *OSImage
	Layout   Layout
	Slot     string
	Duration time.Duration
}

// Install partitions the target and writes the OS image to slot a and to
// recovery. The disk becomes bootable only at the last step (the EFI
// binary), so a power cut at any point leaves a disk firmware skips; running
// install again starts over.
func Install(ctx context.Context, o InstallOptions) (*Result, error) {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	o.Pull.Log = log
	disk, err := OpenDisk(o.Device)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	if err := CheckNotInUse(disk, o.Mounts); err != nil {
		return nil, err
	}
	// Fail before the download when the disk cannot hold even the fixed
	// partitions.
	if _, err := PlanLayout(disk.Size, 0); err != nil {
		return nil, err
	}
	if o.Pull.WorkDir == "" {
		dir, err := os.MkdirTemp("", "edgefleet-install-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Pull.WorkDir = dir
	}
	if o.Pull.CacheDir == "" {
		o.Pull.CacheDir = filepath.Join(o.Pull.WorkDir, "layers")
	}
	log("pulling %s", o.Pull.Image)
	img, err := Pull(ctx, o.Pull)
	if err != nil {
		return nil, err
	}
	log("image %s %s (%s), slot size %d MiB", img.Name, img.Version, img.Digest, img.Size/mib)
	layout, err := PlanLayout(disk.Size, img.Size)
	if err != nil {
		return nil, err
	}
	log("partitioning %s", disk.Path)
	if err := disk.Partition(ctx, layout); err != nil {
		return nil, err
	}
	for _, p := range layout {
		if err := disk.Format(ctx, p); err != nil {
			return nil, fmt.Errorf("formatting %s: %w", p.Label, err)
		}
	}
	steps := []struct {
		label string
		write func(dir string) error
	}{
		{LabelPersistent, func(dir string) error {
			for _, d := range persistentDirs {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					return err
				}
			}
			if o.NodeState == "" {
				return nil
			}
			return copyDir(o.NodeState, filepath.Join(dir, NodeStateDir))
		}},
		{LabelOEM, func(dir string) error { return writeOEM(dir, o.NodeConfig, o.CloudConfigs) }},
		{LabelRecovery, func(dir string) error {
			log("writing the recovery image")
			if err := writeSlot(dir, SlotRecovery, img); err != nil {
				return err
			}
			// GRUB's fallback when EF_STATE has no grub.cfg (a half-written
			// or reset state partition): boot recovery.
			return writeFileAtomic(filepath.Join(dir, GrubCfg), []byte(RecoveryGrubConfig()), 0o644)
		}},
		{LabelState, func(dir string) error {
			log("writing slot a")
			if err := writeSlot(dir, SlotA, img); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(dir, GrubDir), 0o755); err != nil {
				return err
			}
			if err := WriteEnv(ctx, filepath.Join(dir, GrubEnv), Env{EnvActiveSlot: SlotA}); err != nil {
				return err
			}
			return writeFileAtomic(filepath.Join(dir, GrubCfg), []byte(GrubConfig()), 0o644)
		}},
	}
	for _, s := range steps {
		if err := withMounted(ctx, disk, layout.Get(s.label), s.write); err != nil {
			return nil, fmt.Errorf("writing %s: %w (the disk is not bootable; run install again)", s.label, err)
		}
	}
	log("installing the boot loader")
	if err := disk.WriteEFIFile(ctx, layout.Get(LabelEFI), img.GrubEFI, EFIBoot); err != nil {
		return nil, fmt.Errorf("writing %s: %w (the disk is not bootable; run install again)", LabelEFI, err)
	}
	if img.GrubBIOSCore != "" {
		if err := writeBIOSBootFiles(disk.Path, img); err != nil {
			return nil, fmt.Errorf("writing the BIOS boot code: %w (the disk boots with UEFI only; run install again for BIOS)", err)
		}
	}
	return &Result{Image: img, Layout: layout, Slot: SlotA, Duration: time.Since(start)}, nil
}

func writeBIOSBootFiles(path string, img *OSImage) error {
	if st, err := os.Stat(img.GrubBIOSCore); err != nil || st.Size() > (biosBootLast-biosBootFirst+1)*sectorSize {
		return fmt.Errorf("%s is missing or larger than the BIOS boot partition (%v)", ImageGrubBIOSCore, err)
	}
	boot, err := os.ReadFile(img.GrubBIOSBoot)
	if err != nil {
		return err
	}
	core, err := os.ReadFile(img.GrubBIOSCore)
	if err != nil {
		return err
	}
	return WriteBIOSBoot(path, boot, core)
}

// RecoveryGrubConfig is grub/grub.cfg on EF_RECOVERY: it boots recovery.
func RecoveryGrubConfig() string {
	return fmt.Sprintf(`# Written by edgefleet-node: EF_STATE has no boot configuration, boot recovery.
set timeout=1
echo "edgefleet-grub: booting slot recovery"
menuentry "edgefleet recovery" --id recovery {
  linux ($root)/%[1]s/vmlinuz %[2]s
  initrd ($root)/%[1]s/initrd
}
`, SlotBootDir(SlotRecovery), KernelArgs(SlotRecovery))
}

func withMounted(ctx context.Context, disk *Disk, p Part, f func(dir string) error) error {
	dir, unmount, err := disk.Mount(ctx, p)
	if err != nil {
		return err
	}
	err = f(dir)
	if uerr := unmount(); err == nil {
		err = uerr
	}
	return err
}

func writeOEM(dir string, nodeConfig []byte, cloud map[string][]byte) error {
	if len(nodeConfig) > 0 {
		if err := writeFileAtomic(filepath.Join(dir, OEMNodeConfig), nodeConfig, 0o600); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(cloud))
	for n := range cloud {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if filepath.Base(n) != n || n == "." || n == ".." {
			return fmt.Errorf("cloud-config file name %q is not a plain file name", n)
		}
		if err := writeFileAtomic(filepath.Join(dir, OEMCloudConfigs, n), cloud[n], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeSlot writes the image's squashfs, kernel and initrd for slot, each
// beside its final name and renamed into place, then its metadata.
func writeSlot(dir, slot string, img *OSImage) error {
	if err := copyFile(img.Squashfs, filepath.Join(dir, SlotImage(slot)), 0o644); err != nil {
		return err
	}
	for _, f := range [][2]string{{img.Kernel, "vmlinuz"}, {img.Initrd, "initrd"}} {
		if err := copyFile(f[0], filepath.Join(dir, SlotBootDir(slot), f[1]), 0o644); err != nil {
			return err
		}
	}
	meta := SlotInfo{Image: img.Ref, Digest: img.Digest, Name: img.Name, Version: img.Version, Written: time.Now().UTC().Truncate(time.Second)}
	b, _ := json.MarshalIndent(meta, "", "  ")
	return writeFileAtomic(filepath.Join(dir, fmt.Sprintf(slotMeta, slot)), b, 0o644)
}

// SlotInfo is what a slot holds (images/<slot>.json).
type SlotInfo struct {
	Image   string    `json:"image"`
	Digest  string    `json:"digest"`
	Name    string    `json:"name,omitempty"`
	Version string    `json:"version,omitempty"`
	Written time.Time `json:"written"`
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(dst, mode, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
}

func writeFileAtomic(dst string, data []byte, mode os.FileMode) error {
	return writeAtomic(dst, mode, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// writeAtomic writes dst.new, syncs it and renames it over dst.
func writeAtomic(dst string, mode os.FileMode, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return fsyncDir(filepath.Dir(dst))
}

// copyDir copies the regular files of src (one level: the node state has
// no subdirectories) to dst, keeping their modes.
func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
