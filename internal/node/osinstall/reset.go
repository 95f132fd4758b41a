package osinstall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ResetOptions follow Elemental's reset settings.
type ResetOptions struct {
	Device string
	// ResetPersistent reformats EF_PERSISTENT (Elemental reset-persistent,
	// default true). Without it only the node's state is removed.
	ResetPersistent bool
	// ResetOEM removes the cloud-config files from EF_OEM (reset-oem,
	// default true). The node config stays: the machine needs its
	// registration URL to register again.
	ResetOEM bool
	// Reboot and PowerOff are what to do after the reset; ScheduleReset
	// keeps them for the recovery system.
	Reboot, PowerOff bool
	// BootedSlot: a reset runs from recovery (or from another system, on an
	// image file); from slot a or b it is scheduled with ScheduleReset.
	BootedSlot string
	Log        func(format string, args ...any)
}

// resetPending on EF_OEM holds the reset a running system scheduled; the
// recovery system runs it.
const resetPending = "reset-pending.json"

// Reset puts the machine back to its first boot: the state partition is
// rebuilt from the recovery image (slot a, no trial), the persistent and OEM
// partitions are wiped as configured, and the node's state is removed so it
// registers again as a new machine. EF_STATE loses its grub.cfg first, so a
// power cut during the reset boots recovery, which runs the reset again.
func Reset(ctx context.Context, o ResetOptions) error {
	log := o.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	if o.BootedSlot == SlotA || o.BootedSlot == SlotB {
		return fmt.Errorf("this system runs slot %s from the disk being reset: schedule the reset (edgefleet-node reset --schedule) to run it from recovery", o.BootedSlot)
	}
	disk, layout, err := openInstalled(ctx, o.Device)
	if err != nil {
		return err
	}
	defer disk.Close()
	work, err := os.MkdirTemp("", "edgefleet-reset-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// The recovery slot, read back as an image to write to slot a.
	img := &OSImage{Squashfs: filepath.Join(work, "root.squashfs"), Kernel: filepath.Join(work, "vmlinuz"), Initrd: filepath.Join(work, "initrd")}
	err = withMounted(ctx, disk, layout.Get(LabelRecovery), func(dir string) error {
		for src, dst := range map[string]string{SlotImage(SlotRecovery): img.Squashfs, SlotBootDir(SlotRecovery) + "/vmlinuz": img.Kernel, SlotBootDir(SlotRecovery) + "/initrd": img.Initrd} {
			if err := copyFile(filepath.Join(dir, src), dst, 0o644); err != nil {
				return fmt.Errorf("the recovery image is damaged (%v): reinstall the machine", err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf(slotMeta, SlotRecovery))); err == nil {
			var si SlotInfo
			if json.Unmarshal(b, &si) == nil {
				img.Ref, img.Digest, img.Name, img.Version = si.Image, si.Digest, si.Name, si.Version
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	state := layout.Get(LabelState)
	if err := withMounted(ctx, disk, state, func(dir string) error {
		err := os.Remove(filepath.Join(dir, GrubCfg))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return fsyncDir(filepath.Join(dir, GrubDir))
	}); err != nil {
		log("EF_STATE unreadable (%v): reformatting it", err)
	}
	log("rebuilding EF_STATE from the recovery image")
	if err := disk.Format(ctx, state); err != nil {
		return err
	}
	if err := withMounted(ctx, disk, state, func(dir string) error {
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
	}); err != nil {
		return err
	}
	persistent := layout.Get(LabelPersistent)
	if o.ResetPersistent {
		log("reformatting EF_PERSISTENT")
		if err := disk.Format(ctx, persistent); err != nil {
			return err
		}
	}
	if err := withMounted(ctx, disk, persistent, func(dir string) error {
		for _, d := range persistentDirs {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return err
			}
		}
		// The machine registers again as a new machine.
		for _, d := range []string{NodeStateDir, "var-lib/edgefleet"} {
			if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return withMounted(ctx, disk, layout.Get(LabelOEM), func(dir string) error {
		if o.ResetOEM {
			log("clearing EF_OEM (the node config stays)")
			entries, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.Name() == OEMNodeConfig || e.Name() == "lost+found" {
					continue
				}
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
		err := os.Remove(filepath.Join(dir, resetPending))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// ScheduleReset is reset on a running installed system: it records the
// reset options on EF_OEM and makes GRUB boot recovery once
// (next_entry=recovery); the recovery system runs PendingReset. The caller
// reboots.
func ScheduleReset(ctx context.Context, o ResetOptions) error {
	disk, layout, err := openInstalled(ctx, o.Device)
	if err != nil {
		return err
	}
	defer disk.Close()
	b, _ := json.Marshal(pendingReset{ResetPersistent: o.ResetPersistent, ResetOEM: o.ResetOEM, Reboot: o.Reboot, PowerOff: o.PowerOff})
	if err := withMounted(ctx, disk, layout.Get(LabelOEM), func(dir string) error {
		return writeFileAtomic(filepath.Join(dir, resetPending), b, 0o600)
	}); err != nil {
		return err
	}
	return withMounted(ctx, disk, layout.Get(LabelState), func(dir string) error {
		_, err := UpdateEnv(ctx, filepath.Join(dir, GrubEnv), func(e Env) { e[EnvNextEntry] = SlotRecovery })
		return err
	})
}

type pendingReset struct {
	ResetPersistent bool `json:"resetPersistent"`
	ResetOEM        bool `json:"resetOEM"`
	Reboot          bool `json:"reboot"`
	PowerOff        bool `json:"poweroff"`
}

// PendingReset returns the reset a running system scheduled, if any.
func PendingReset(ctx context.Context, device string) (*ResetOptions, error) {
	disk, layout, err := openInstalled(ctx, device)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	var o *ResetOptions
	err = withMounted(ctx, disk, layout.Get(LabelOEM), func(dir string) error {
		b, err := os.ReadFile(filepath.Join(dir, resetPending))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		var p pendingReset
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("%s on EF_OEM is corrupt: %w", resetPending, err)
		}
		o = &ResetOptions{Device: device, ResetPersistent: p.ResetPersistent, ResetOEM: p.ResetOEM, Reboot: p.Reboot, PowerOff: p.PowerOff}
		return nil
	})
	return o, err
}
