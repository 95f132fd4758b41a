// Package nodestatus is what the node reports on its MachineInventory's
// status besides the plan (internal/wire/nodeplan.Status): status.os and
// the OS conditions. The types mirror machines.edgefleet.io/v1alpha1
// OSStatus and metav1.Condition with the same JSON names (a test checks
// that they decode strictly into the API types), so the node binary does
// not link apimachinery.
package nodestatus

import "time"

// OS is the node's MachineInventory status.os.
type OS struct {
	Image       string   `json:"image,omitempty"`
	Digest      string   `json:"digest,omitempty"`
	Name        string   `json:"name,omitempty"`
	Version     string   `json:"version,omitempty"`
	ActiveSlot  string   `json:"activeSlot,omitempty"`
	BootedSlot  string   `json:"bootedSlot,omitempty"`
	TrySlot     string   `json:"trySlot,omitempty"`
	LastUpgrade *Upgrade `json:"lastUpgrade,omitempty"`
}

// Upgrade is one OS upgrade and its result (status.os.lastUpgrade).
type Upgrade struct {
	Image   string `json:"image,omitempty"`
	Version string `json:"version,omitempty"`
	Slot    string `json:"slot,omitempty"`
	Result  string `json:"result,omitempty"`
	// Time is UTC, whole seconds (metav1.Time's precision).
	Time    *time.Time `json:"time,omitempty"`
	Message string     `json:"message,omitempty"`
}

// Condition is a metav1.Condition the node owns (OSReady, RolledBack).
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	ObservedGeneration int64     `json:"observedGeneration,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
	Reason             string    `json:"reason"`
	Message            string    `json:"message"`
}

// Condition types, reasons and values the node sets; the same strings as
// the API package's constants (checked by a test).
const (
	OSReadyCondition    = "OSReady"
	RolledBackCondition = "RolledBack"

	OSInstalledReason       = "OSInstalled"
	UpgradePendingReason    = "UpgradePending"
	UpgradeFailedReason     = "UpgradeFailed"
	UpgradeRolledBackReason = "UpgradeRolledBack"
	NoRollbackReason        = "NoRollback"
	RecoveryBootedReason    = "RecoveryBooted"
	InstallingReason        = "Installing"
	InstallFailedReason     = "InstallFailed"

	True  = "True"
	False = "False"
)

// KeepTransitions sets each condition's LastTransitionTime: the old one
// when the status did not change (old holds what the object has now), now
// otherwise.
func KeepTransitions(conds []Condition, old []Condition, now time.Time) {
	for i := range conds {
		conds[i].LastTransitionTime = now.UTC().Truncate(time.Second)
		for _, o := range old {
			if o.Type == conds[i].Type && o.Status == conds[i].Status && !o.LastTransitionTime.IsZero() {
				conds[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
}

// Network is the node's MachineInventory status.network: where cluster
// formation takes node and API addresses from.
type Network struct {
	PrimaryAddress string   `json:"primaryAddress,omitempty"`
	Addresses      []string `json:"addresses,omitempty"`
}
