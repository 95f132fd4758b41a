package osinstall

import (
	"context"
	"fmt"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/wire/nodestatus"
)

// FieldManager owns status.os and the OSReady and RolledBack conditions
// (server-side apply). It is not the plan reporter's "edgefleet-node":
// an apply removes the fields its manager owned and no longer sends, so
// each reporter applies under its own name and never clears the other's.
const FieldManager = "edgefleet-node-os"

// InventoryOS maps the disk's state to MachineInventory status.os and the
// OSReady and RolledBack conditions (without transition times).
func InventoryOS(st *Status) (nodestatus.OS, []nodestatus.Condition) {
	slot := st.Booted()
	os := nodestatus.OS{Image: slot.Image, Digest: slot.Digest, Name: slot.Name, Version: slot.Version,
		ActiveSlot: st.ActiveSlot, BootedSlot: st.BootedSlot, TrySlot: st.TrySlot}
	ready := nodestatus.Condition{Type: nodestatus.OSReadyCondition, Status: nodestatus.True, Reason: nodestatus.OSInstalledReason,
		Message: fmt.Sprintf("running %s %s from confirmed slot %s", slot.Name, slot.Version, st.ActiveSlot)}
	rolled := nodestatus.Condition{Type: nodestatus.RolledBackCondition, Status: nodestatus.False, Reason: nodestatus.NoRollbackReason, Message: "the last upgrade was not rolled back"}
	if lu := st.LastUpgrade; lu != nil {
		t := lu.Time.UTC().Truncate(time.Second)
		os.LastUpgrade = &nodestatus.Upgrade{Image: lu.Image, Version: lu.Version, Slot: lu.Slot, Result: lu.Result, Time: &t, Message: lu.Message}
		if lu.Time.IsZero() {
			os.LastUpgrade.Time = nil
		}
		switch lu.Result {
		case UpgradePending:
			ready.Status, ready.Reason, ready.Message = nodestatus.False, nodestatus.UpgradePendingReason, lu.Message
		case UpgradeFailed:
			ready.Status, ready.Reason, ready.Message = nodestatus.False, nodestatus.UpgradeFailedReason, "upgrade to "+lu.Image+" failed: "+lu.Message
		case UpgradeRolledBack:
			ready.Status, ready.Reason, ready.Message = nodestatus.False, nodestatus.UpgradeRolledBackReason, lu.Message
			rolled.Status, rolled.Reason, rolled.Message = nodestatus.True, nodestatus.UpgradeRolledBackReason, lu.Message
		}
	}
	if st.BootedSlot == SlotRecovery {
		ready.Status, ready.Reason, ready.Message = nodestatus.False, nodestatus.RecoveryBootedReason, "the machine runs its recovery image"
	}
	return os, []nodestatus.Condition{ready, rolled}
}

// ReportStatus writes status.os and the OS conditions of the machine's own
// MachineInventory with the machine's credential, by server-side apply as
// FieldManager: only those fields change (status.plan, Ready, Registered
// and the manager's other conditions stay). It reads the inventory first
// so a condition whose status did not change keeps its transition time.
func ReportStatus(ctx context.Context, kube *nodekube.Client, namespace, name string, st *Status) error {
	inv, err := kube.GetInventory(ctx, namespace, name)
	if err != nil {
		return err
	}
	osStatus, conds := InventoryOS(st)
	nodestatus.KeepTransitions(conds, inv.Status.Conditions, time.Now())
	for i := range conds {
		conds[i].ObservedGeneration = inv.Metadata.Generation
	}
	return kube.ApplyStatus(ctx, namespace, name, FieldManager, map[string]any{"os": osStatus, "conditions": conds})
}
