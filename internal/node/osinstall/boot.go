package osinstall

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BootSlotFile is where the boot init writes edgefleet.slot (contract §3).
const BootSlotFile = "/run/edgefleet/boot-slot"

// BootedSlot reads the slot the running system booted, "" when unknown.
func BootedSlot(file string) string {
	if file == "" {
		file = BootSlotFile
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Status is the OS state of an installed disk: what MachineInventory
// status.os reports.
type Status struct {
	ActiveSlot string              `json:"activeSlot"`
	TrySlot    string              `json:"trySlot,omitempty"`
	TriesLeft  string              `json:"triesLeft,omitempty"`
	BootedSlot string              `json:"bootedSlot,omitempty"`
	Slots      map[string]SlotInfo `json:"slots"`
	// LastUpgrade is the last upgrade and its result (RolledBack when GRUB
	// went back to the active slot).
	LastUpgrade *UpgradeInfo `json:"lastUpgrade,omitempty"`
}

// Booted is the slot the system runs, or the active one.
func (s *Status) Booted() SlotInfo {
	if s.BootedSlot != "" {
		return s.Slots[s.BootedSlot]
	}
	return s.Slots[s.ActiveSlot]
}

// ConfirmResult says what boot confirm did.
type ConfirmResult struct {
	// Confirmed: the booted slot was on trial and is now the active one.
	Confirmed bool
	// RolledBack is the slot GRUB gave up on since the last confirm.
	RolledBack string
	Status     *Status
}

// Confirm records a healthy boot of bootedSlot (the node reached the
// manager). When that slot was on trial it becomes the active slot. When
// GRUB rolled back since, the last upgrade is marked RolledBack and the
// rolled_back flag is cleared: the upgrade record keeps the fact for status.
func Confirm(ctx context.Context, device, bootedSlot string) (*ConfirmResult, error) {
	disk, layout, err := openInstalled(ctx, device)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	res := &ConfirmResult{}
	err = withMounted(ctx, disk, layout.Get(LabelState), func(dir string) error {
		envFile := filepath.Join(dir, GrubEnv)
		env, err := ReadEnv(ctx, envFile)
		if err != nil {
			return err
		}
		rec := readRecord(dir)
		changed := false
		if try := env[EnvTrySlot]; try != "" && try == bootedSlot {
			env[EnvActiveSlot], env[EnvTrySlot], env[EnvTryCount] = try, "", ""
			res.Confirmed, changed = true, true
			if rec != nil && rec.Slot == try && rec.Result == UpgradePending {
				rec.Result, rec.Time = UpgradeSucceeded, time.Now().UTC()
				rec.Message = fmt.Sprintf("slot %s booted and reached the manager; it is the active slot", try)
			}
		}
		if rb := env[EnvRolledBack]; rb != "" {
			res.RolledBack = rb
			env[EnvRolledBack] = ""
			changed = true
			if rec != nil && rec.Slot == rb && rec.Result == UpgradePending {
				rec.Result, rec.Time = UpgradeRolledBack, time.Now().UTC()
				rec.Message = fmt.Sprintf("slot %s (%s) did not confirm a healthy boot in its tries; the bootloader went back to slot %s", rb, rec.Image, env[EnvActiveSlot])
			}
		}
		if rec != nil && changed {
			if err := writeRecord(dir, rec); err != nil {
				return err
			}
		}
		if changed {
			if err := WriteEnv(ctx, envFile, env); err != nil {
				return err
			}
		}
		res.Status = readStatus(env, dir, bootedSlot)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ReadStatus reads the OS state of an installed disk without changing it.
func ReadStatus(ctx context.Context, device, bootedSlot string) (*Status, error) {
	disk, layout, err := openInstalled(ctx, device)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	var st *Status
	err = withMounted(ctx, disk, layout.Get(LabelState), func(dir string) error {
		env, err := ReadEnv(ctx, filepath.Join(dir, GrubEnv))
		if err != nil {
			return err
		}
		st = readStatus(env, dir, bootedSlot)
		return nil
	})
	return st, err
}

func readStatus(env Env, dir, booted string) *Status {
	st := &Status{ActiveSlot: env[EnvActiveSlot], TrySlot: env[EnvTrySlot], TriesLeft: env[EnvTryCount], BootedSlot: booted, Slots: map[string]SlotInfo{}, LastUpgrade: readRecord(dir)}
	if st.ActiveSlot != SlotB {
		st.ActiveSlot = SlotA
	}
	for _, s := range []string{SlotA, SlotB} {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf(slotMeta, s)))
		if err != nil {
			continue
		}
		var si SlotInfo
		if json.Unmarshal(b, &si) == nil {
			st.Slots[s] = si
		}
	}
	if st.LastUpgrade != nil && st.LastUpgrade.Result == UpgradePending && env[EnvRolledBack] == st.LastUpgrade.Slot {
		st.LastUpgrade.Result = UpgradeRolledBack
	}
	return st
}
