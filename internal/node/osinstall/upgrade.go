package osinstall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Upgrade results (status.os.lastUpgrade.result).
const (
	UpgradePending    = "Pending"
	UpgradeSucceeded  = "Succeeded"
	UpgradeFailed     = "Failed"
	UpgradeRolledBack = "RolledBack"
)

// upgradeRecord is EF_STATE/upgrade.json, the last upgrade and its outcome.
const upgradeRecord = "upgrade.json"

// UpgradeInfo is the last upgrade and how it ended.
type UpgradeInfo struct {
	Image   string    `json:"image"`
	Digest  string    `json:"digest,omitempty"`
	Version string    `json:"version,omitempty"`
	Slot    string    `json:"slot,omitempty"`
	Result  string    `json:"result"`
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
}

// UpgradeOptions configure an upgrade.
type UpgradeOptions struct {
	// Device is the installed disk (block device or image file).
	Device string
	Pull   PullOptions
	// Tries is how many boots the new slot gets (DefaultTries when 0).
	Tries int
	// BootedSlot is the slot the system runs (/run/edgefleet/boot-slot);
	// empty when not running from the disk (image files).
	BootedSlot string
	Log        func(format string, args ...any)
}

// Upgrade writes the image to the passive slot and puts that slot on trial:
// GRUB boots it Tries times; unless the node confirms a boot, it goes back
// to the active slot. The environment is switched last, so a power cut
// during the upgrade boots the active slot as before.
func Upgrade(ctx context.Context, o UpgradeOptions) (*UpgradeInfo, error) {
	log := o.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	o.Pull.Log = log
	tries := o.Tries
	if tries == 0 {
		tries = DefaultTries
	}
	if tries < 1 || tries > maxTries {
		return nil, fmt.Errorf("tries must be 1 to %d, not %d", maxTries, tries)
	}
	disk, layout, err := openInstalled(ctx, o.Device)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	if o.Pull.WorkDir == "" {
		dir, err := os.MkdirTemp("", "edgefleet-upgrade-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Pull.WorkDir = dir
	}
	if o.Pull.CacheDir == "" {
		o.Pull.CacheDir = filepath.Join(o.Pull.WorkDir, "layers")
	}
	var info *UpgradeInfo
	err = withMounted(ctx, disk, layout.Get(LabelState), func(dir string) error {
		envFile := filepath.Join(dir, GrubEnv)
		env, err := ReadEnv(ctx, envFile)
		if err != nil {
			return err
		}
		active := env[EnvActiveSlot]
		if active != SlotB {
			active = SlotA
		}
		passive := OtherSlot(active)
		if o.BootedSlot == passive {
			return fmt.Errorf("this system runs slot %s on trial, not yet confirmed: run `edgefleet-node boot confirm` (or reboot to let it roll back) before upgrading again", passive)
		}
		if o.BootedSlot == SlotRecovery {
			return errors.New("this system runs the recovery image: reset or reboot into the installed system before upgrading")
		}
		log("pulling %s", o.Pull.Image)
		img, err := Pull(ctx, o.Pull)
		if err != nil {
			rec := &UpgradeInfo{Image: o.Pull.Image, Slot: passive, Result: UpgradeFailed, Time: time.Now().UTC(), Message: err.Error()}
			_ = writeRecord(dir, rec)
			return err
		}
		// Leftovers of an upgrade cut short by a power loss.
		for _, p := range []string{SlotImage(passive), SlotBootDir(passive) + "/vmlinuz", SlotBootDir(passive) + "/initrd"} {
			os.Remove(filepath.Join(dir, p+".new"))
		}
		if err := checkRoom(dir, passive, img); err != nil {
			return err
		}
		// A pending trial of the passive slot ends before its files change:
		// GRUB must never boot a half-written slot.
		if env[EnvTrySlot] != "" {
			env[EnvTrySlot], env[EnvTryCount] = "", ""
			if err := WriteEnv(ctx, envFile, env); err != nil {
				return err
			}
		}
		log("writing slot %s", passive)
		if err := writeSlot(dir, passive, img); err != nil {
			return err
		}
		syscall.Sync()
		info = &UpgradeInfo{Image: img.Ref, Digest: img.Digest, Version: img.Version, Slot: passive, Result: UpgradePending, Time: time.Now().UTC(),
			Message: fmt.Sprintf("slot %s written; it boots on trial (%d tries) until the node confirms a healthy boot", passive, tries)}
		if err := writeRecord(dir, info); err != nil {
			return err
		}
		env[EnvTrySlot], env[EnvTryCount], env[EnvRolledBack] = passive, strconv.Itoa(tries), ""
		return WriteEnv(ctx, envFile, env)
	})
	if err != nil {
		return nil, err
	}
	return info, nil
}

// checkRoom fails when the state partition cannot hold the new slot.
func checkRoom(dir, slot string, img *OSImage) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err
	}
	free := int64(st.Bavail) * st.Bsize
	for _, p := range []string{SlotImage(slot), SlotBootDir(slot) + "/vmlinuz", SlotBootDir(slot) + "/initrd"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err == nil {
			free += fi.Size()
		}
	}
	// The new file is written beside the old one before the rename.
	if need := img.Size + 4*mib; need > free {
		return fmt.Errorf("EF_STATE has %d MiB free for slot %s, the image needs %d MiB: this image is too big for the installed layout (reinstall with a bigger disk)", free/mib, slot, need/mib)
	}
	return nil
}

func writeRecord(dir string, rec *UpgradeInfo) error {
	b, _ := json.MarshalIndent(rec, "", "  ")
	return writeFileAtomic(filepath.Join(dir, upgradeRecord), b, 0o644)
}

func readRecord(dir string) *UpgradeInfo {
	b, err := os.ReadFile(filepath.Join(dir, upgradeRecord))
	if err != nil {
		return nil
	}
	rec := &UpgradeInfo{}
	if json.Unmarshal(b, rec) != nil {
		return nil
	}
	return rec
}

// openInstalled opens the disk holding an installation: device, or the disk
// of the partition labelled EF_STATE.
func openInstalled(ctx context.Context, device string) (*Disk, Layout, error) {
	if device == "" {
		var err error
		if device, err = FindInstalledDisk(ctx); err != nil {
			return nil, nil, err
		}
	}
	disk, err := OpenDisk(device)
	if err != nil {
		return nil, nil, err
	}
	layout, err := disk.ReadLayout(ctx)
	if err != nil {
		return nil, nil, err
	}
	return disk, layout, nil
}

// FindInstalledDisk returns the disk with the partition labelled EF_STATE.
func FindInstalledDisk(ctx context.Context) (string, error) {
	blkid, err := lookTool("blkid", "util-linux")
	if err != nil {
		return "", err
	}
	out, err := runTool(ctx, blkid, "-L", LabelState)
	if err != nil {
		return "", fmt.Errorf("no partition labelled %s: this machine has no edgefleet installation (pass --device)", LabelState)
	}
	part := filepath.Base(trimSpace(out))
	link, err := os.Readlink(filepath.Join("/sys/class/block", part))
	if err != nil {
		return "", err
	}
	return "/dev/" + filepath.Base(filepath.Dir(link)), nil
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}
