/*
Copyright 2026 The edgefleet Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

// Condition types shared by every kind in this group. Every kind reports
// Ready; Reconciling and Stalled follow the kstatus convention and are present
// only while they are True.
const (
	// ReadyCondition is True when the object has reached its desired state.
	ReadyCondition = "Ready"

	// ReconcilingCondition is present and True while the controller is working
	// towards the desired state.
	ReconcilingCondition = "Reconciling"

	// StalledCondition is present and True when the controller cannot make
	// progress without a change to the object or its environment.
	StalledCondition = "Stalled"
)

// Kind-specific condition types.
const (
	// RegisteredCondition (MachineInventory) is True once the machine has
	// completed registration and proved its identity.
	RegisteredCondition = "Registered"

	// PlanAppliedCondition (MachineInventory) is True when the machine
	// reported the current plan of its plan Secret applied.
	PlanAppliedCondition = "PlanApplied"
	// OSReadyCondition (MachineInventory) is True when the machine runs its
	// installed OS from a confirmed slot, False while an upgrade is on trial
	// or after one failed or was rolled back. Set by the node agent.
	OSReadyCondition = "OSReady"

	// RolledBackCondition (MachineInventory) is True when the last OS
	// upgrade was rolled back by the bootloader. Set by the node agent.
	RolledBackCondition = "RolledBack"
)

// Generic condition reasons. Reasons are PascalCase and always set.
const (
	// SucceededReason means the last reconcile reached the desired state.
	SucceededReason = "Succeeded"

	// ProgressingReason means work towards the desired state is under way.
	ProgressingReason = "Progressing"

	// FailedReason means the last reconcile failed; the message has details.
	FailedReason = "Failed"

	// InvalidSpecReason means the spec cannot be acted on as written.
	InvalidSpecReason = "InvalidSpec"
)

// MachineRegistration condition reasons.
const (
	// RegistrationEndpointReadyReason: the registration URL is served and
	// machines can register.
	RegistrationEndpointReadyReason = "RegistrationEndpointReady"

	// RBACCreationFailedReason: the credentials for registered machines could
	// not be created.
	RBACCreationFailedReason = "RBACCreationFailed"

	// TokenExpiredReason: the registration token is past spec.token.ttl; new
	// machines are refused until it is rotated.
	TokenExpiredReason = "TokenExpired"
)

// MachineInventory condition reasons.
const (
	// RegistrationSucceededReason: the machine registered and proved its
	// identity.
	RegistrationSucceededReason = "RegistrationSucceeded"

	// WaitingForRegistrationReason: the inventory exists but the machine has
	// not completed registration.
	WaitingForRegistrationReason = "WaitingForRegistration"

	// MachineObjectsReadyReason: the machine's plan Secret, ServiceAccount,
	// Role and RoleBinding exist and belong to the inventory. No longer set:
	// Ready now also requires the plan applied (PlanAppliedReason).
	MachineObjectsReadyReason = "MachineObjectsReady"

	// ObjectConflictReason (Ready): an object with the name of one of the
	// machine's objects exists but does not belong to the inventory; the
	// manager never takes it over.
	ObjectConflictReason = "ObjectConflict"

	// PlanAppliedReason (PlanApplied, Ready): the machine applied the
	// current plan.
	PlanAppliedReason = "PlanApplied"

	// WaitingForPlanReason (PlanApplied, Ready, Reconciling): the machine
	// has not reported the current plan applied yet.
	WaitingForPlanReason = "WaitingForPlan"

	// PlanFailedReason (PlanApplied, Ready, Reconciling): the current plan
	// failed on the machine; the message names the instruction. The
	// machine retries it with backoff.
	PlanFailedReason = "PlanFailed"

	// InvalidPlanReason (PlanApplied, Ready, Stalled): the plan Secret does
	// not hold a valid plan; nothing of it is applied until it is fixed.
	InvalidPlanReason = "InvalidPlan"
)

// MachineInventory OS condition reasons (OSReady, RolledBack).
const (
	// OSInstalledReason (OSReady True): the machine runs a confirmed slot.
	OSInstalledReason = "OSInstalled"

	// UpgradePendingReason (OSReady False): a new slot is on trial and has
	// not confirmed a healthy boot yet.
	UpgradePendingReason = "UpgradePending"

	// UpgradeFailedReason (OSReady False): the last upgrade could not write
	// the new image; the machine runs the previous one.
	UpgradeFailedReason = "UpgradeFailed"

	// UpgradeRolledBackReason (OSReady False, RolledBack True): the new slot
	// did not confirm a boot in its tries; the bootloader went back.
	UpgradeRolledBackReason = "UpgradeRolledBack"

	// NoRollbackReason (RolledBack False): the last upgrade was not rolled
	// back.
	NoRollbackReason = "NoRollback"

	// RecoveryBootedReason (OSReady False): the machine runs its recovery
	// image (a reset is under way).
	RecoveryBootedReason = "RecoveryBooted"

	// InstallingReason (OSReady False): the live system is installing the
	// OS to disk; the message says what, where, since when, which attempt,
	// and whether an earlier attempt did not finish (power loss).
	InstallingReason = "Installing"

	// InstallFailedReason (OSReady False): the install stopped with an
	// error (in the message); the machine runs its live system.
	InstallFailedReason = "InstallFailed"
)

// SeedImage condition reasons.
const (
	// BuildOngoingReason: the image is being built.
	BuildOngoingReason = "BuildOngoing"

	// BuildSucceededReason: the image was built and can be downloaded.
	BuildSucceededReason = "BuildSucceeded"

	// BuildFailedReason: the image build failed.
	BuildFailedReason = "BuildFailed"

	// ImageExpiredReason: the image was cleaned up after
	// cleanupAfterMinutes; set retriggerBuild to build it again.
	ImageExpiredReason = "ImageExpired"
)

// ManagedOSImage and ManagedOSVersionChannel condition reasons.
const (
	// RolloutProgressingReason (Reconciling, Ready False): machines are
	// being upgraded.
	RolloutProgressingReason = "RolloutProgressing"
	// RolloutPausedReason (Ready False): spec.paused; no new machine starts.
	RolloutPausedReason = "RolloutPaused"
	// RolloutCompleteReason (Ready True): every selected machine runs the
	// image.
	RolloutCompleteReason = "RolloutComplete"
	// MachineUpgradeFailedReason (Stalled): a machine's upgrade failed; the
	// message names it.
	MachineUpgradeFailedReason = "MachineUpgradeFailed"
	// MachineRolledBackReason (Stalled): a machine's new slot did not
	// confirm a boot; the message names it.
	MachineRolledBackReason = "MachineRolledBack"
	// MachinesHeldReason (Ready False): the others are upgraded, but
	// machines whose previous upgrade rolled back are held.
	MachinesHeldReason = "MachinesHeld"
	// NoMachinesSelectedReason (Ready False): the selector matches no
	// machine.
	NoMachinesSelectedReason = "NoMachinesSelected"
	// VersionNotFoundReason (Stalled): managedOSVersionName names no
	// ManagedOSVersion.
	VersionNotFoundReason = "VersionNotFound"
	// SyncFailedReason (Ready False, Reconciling): the channel could not be
	// fetched; retried.
	SyncFailedReason = "SyncFailed"
	// InvalidChannelReason (Stalled): the channel's content is not a valid
	// version list; nothing of it was applied.
	InvalidChannelReason = "InvalidChannel"
	// SyncedReason (Ready True): the channel was synced.
	SyncedReason = "Synced"
)
