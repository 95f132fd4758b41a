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

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Well-known labels the registration server sets on every MachineInventory
// from the machine's SMBIOS and system data (values sanitized to valid label
// values). They are shown by `kubectl get machineinventories -o wide`.
const (
	// LabelManufacturer is the system manufacturer (SMBIOS System
	// Information/Manufacturer).
	LabelManufacturer = "machines.edgefleet.io/manufacturer"

	// LabelProductName is the system product name (SMBIOS System
	// Information/Product Name).
	LabelProductName = "machines.edgefleet.io/product-name"

	// LabelArchitecture is the CPU architecture in GOARCH form, e.g. "amd64".
	LabelArchitecture = "machines.edgefleet.io/arch"
)

// PlanState is the state of a machine's plan.
// +kubebuilder:validation:Enum=Pending;Applied;Failed
type PlanState string

const (
	// PlanPending: the machine has not reported on the current plan yet.
	PlanPending PlanState = "Pending"
	// PlanApplied: the machine applied the current plan.
	PlanApplied PlanState = "Applied"
	// PlanFailed: the machine failed to apply the current plan.
	PlanFailed PlanState = "Failed"
)

// MachineInventory represents one registered machine. It is created by the
// registration server when a machine registers through a MachineRegistration,
// carries the machine's identity and hardware labels, and points to the plan
// the machine's agent applies.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=minv,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Registered",type=string,JSONPath=`.status.conditions[?(@.type=="Registered")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=10
// +kubebuilder:printcolumn:name="Plan",type=string,JSONPath=`.status.plan.state`
// +kubebuilder:printcolumn:name="Failed-Instruction",type=string,JSONPath=`.status.plan.failure.instruction`,priority=10
// +kubebuilder:printcolumn:name="Manufacturer",type=string,JSONPath=`.metadata.labels.machines\.edgefleet\.io/manufacturer`,priority=10
// +kubebuilder:printcolumn:name="Product",type=string,JSONPath=`.metadata.labels.machines\.edgefleet\.io/product-name`,priority=10
// +kubebuilder:printcolumn:name="Arch",type=string,JSONPath=`.metadata.labels.machines\.edgefleet\.io/arch`,priority=10
// +kubebuilder:printcolumn:name="OS",type=string,JSONPath=`.status.os.version`
// +kubebuilder:printcolumn:name="Slot",type=string,JSONPath=`.status.os.activeSlot`
// +kubebuilder:printcolumn:name="Upgrade",type=string,JSONPath=`.status.os.lastUpgrade.result`,priority=10
// +kubebuilder:printcolumn:name="Last-Seen",type=date,JSONPath=`.status.lastSeen`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineInventory struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the machine's identity and references.
	// +optional
	Spec MachineInventorySpec `json:"spec,omitzero"`

	// status is the observed state of the machine.
	// +optional
	Status MachineInventoryStatus `json:"status,omitzero"`
}

// MachineInventorySpec is the desired state of a MachineInventory.
type MachineInventorySpec struct {
	// tpmHash identifies machines that authenticate with a TPM: the
	// hex-encoded SHA-256 of the PKIX-encoded public endorsement key.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	TPMHash string `json:"tpmHash,omitempty"`

	// machineHash identifies machines that authenticate without a TPM: the
	// hex-encoded SHA-256 of their MAC address or SMBIOS UUID.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	MachineHash string `json:"machineHash,omitempty"`

	// planRef references the Secret holding the plan the machine's agent
	// applies.
	// +optional
	PlanRef *ObjectReference `json:"planRef,omitempty"`

	// registrationRef references the MachineRegistration the machine
	// registered through.
	// +optional
	RegistrationRef *ObjectReference `json:"registrationRef,omitempty"`
}

// MachineInventoryStatus is the observed state of a MachineInventory.
type MachineInventoryStatus struct {
	// conditions describe the machine's current state: Registered,
	// PlanApplied (the machine applied the plan in its plan Secret), Ready
	// (its plan Secret and credential exist and belong to it AND the
	// current plan is applied), and Reconciling (plan pending or failing,
	// retried by the machine) or Stalled (the plan is invalid) while they
	// are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastSeen is when the machine last contacted the manager: its
	// registration, or a plan report of its node agent.
	// +optional
	LastSeen metav1.Time `json:"lastSeen,omitzero"`

	// plan reports the state of the machine's plan.
	// +optional
	Plan PlanStatus `json:"plan,omitzero"`

	// os is the operating system installed on the machine, as its node
	// agent reported it last (edgefleet-node boot confirm / boot status).
	// +optional
	OS OSStatus `json:"os,omitzero"`

	// network is the machine's addresses as its node agent reported them
	// last; cluster formation takes node and API addresses from it.
	// +optional
	Network NetworkStatus `json:"network,omitzero"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// NetworkStatus is what a machine's node agent reports about its network.
type NetworkStatus struct {
	// primaryAddress is the first address of the interface that holds the
	// default route (or of the first non-loopback interface when there is
	// no default route).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	PrimaryAddress string `json:"primaryAddress,omitempty"`

	// addresses are the IP addresses of the machine's non-loopback
	// interfaces, without prefix length.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	Addresses []string `json:"addresses,omitempty"`
}

// OSSlot is one of the installed disk's boot slots.
// +kubebuilder:validation:Enum=a;b;recovery;live
type OSSlot string

// OSUpgradeResult is how an OS upgrade ended.
// +kubebuilder:validation:Enum=Pending;Succeeded;Failed;RolledBack
type OSUpgradeResult string

const (
	// OSUpgradePending: the new image is written to the passive slot, which
	// boots on trial until the node confirms a healthy boot.
	OSUpgradePending OSUpgradeResult = "Pending"
	// OSUpgradeSucceeded: the new slot booted, reached the manager and is
	// the active slot.
	OSUpgradeSucceeded OSUpgradeResult = "Succeeded"
	// OSUpgradeFailed: the upgrade could not write the new image (pull or
	// disk error); the machine runs the previous image.
	OSUpgradeFailed OSUpgradeResult = "Failed"
	// OSUpgradeRolledBack: the new slot did not confirm a healthy boot in its
	// tries and the bootloader went back to the previous slot.
	OSUpgradeRolledBack OSUpgradeResult = "RolledBack"
)

// OSStatus is the operating system installed on a machine.
type OSStatus struct {
	// image is the OS image reference the running slot was installed from.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image,omitempty"`

	// digest is the image's manifest digest.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Digest string `json:"digest,omitempty"`

	// name is the OS name (image label io.edgefleet.os.name).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name,omitempty"`

	// version is the OS version (image label io.edgefleet.os.version).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Version string `json:"version,omitempty"`

	// activeSlot is the confirmed slot the bootloader boots (a or b).
	// +optional
	ActiveSlot OSSlot `json:"activeSlot,omitempty"`

	// bootedSlot is the slot the machine runs now; it differs from
	// activeSlot while a new slot is on trial, and is recovery during a
	// reset.
	// +optional
	BootedSlot OSSlot `json:"bootedSlot,omitempty"`

	// trySlot is a slot on trial: the bootloader boots it until its tries
	// run out, then goes back to activeSlot.
	// +optional
	TrySlot OSSlot `json:"trySlot,omitempty"`

	// lastUpgrade is the last upgrade and its result.
	// +optional
	LastUpgrade *OSUpgradeStatus `json:"lastUpgrade,omitempty"`
}

// OSUpgradeStatus is one OS upgrade and its result.
type OSUpgradeStatus struct {
	// image is the OS image the upgrade installed.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image,omitempty"`

	// version is the upgraded-to OS version.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Version string `json:"version,omitempty"`

	// slot is the slot the image was written to.
	// +optional
	Slot OSSlot `json:"slot,omitempty"`

	// result is Pending, Succeeded, Failed or RolledBack.
	// +optional
	Result OSUpgradeResult `json:"result,omitempty"`

	// time is when the result was reached.
	// +optional
	Time metav1.Time `json:"time,omitzero"`

	// message says what happened, e.g. why it was rolled back.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
}

// PlanStatus is the state of a machine's plan. The manager sets checksum
// and state from the plan Secret; the machine's node agent reports the rest
// (server-side apply, field manager "edgefleet-node").
type PlanStatus struct {
	// checksum is the hex SHA-256 of the plan Secret's "plan" key: the
	// plan the machine should apply.
	// +optional
	Checksum string `json:"checksum,omitempty"`

	// state of the current plan on the machine: Pending until the machine
	// reports on it, then Applied or Failed.
	// +optional
	State PlanState `json:"state,omitempty"`

	// appliedChecksum is the checksum of the plan the machine last applied
	// successfully.
	// +optional
	AppliedChecksum string `json:"appliedChecksum,omitempty"`

	// failedChecksum is the checksum of the plan whose last attempt failed;
	// the machine retries it with exponential backoff.
	// +optional
	FailedChecksum string `json:"failedChecksum,omitempty"`

	// failure says why failedChecksum failed: the instruction, its exit
	// code and the end of its output.
	// +optional
	Failure *PlanFailure `json:"failure,omitempty"`

	// attempts counts the failed attempts at the current plan.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// nextRetryTime is when the machine retries the failed plan.
	// +optional
	NextRetryTime *metav1.Time `json:"nextRetryTime,omitempty"`

	// lastAppliedTime is when the machine last finished applying a plan.
	// +optional
	LastAppliedTime *metav1.Time `json:"lastAppliedTime,omitempty"`

	// instructions are the last results of the plan's one-time
	// instructions, in plan order (output only with saveOutput or on
	// failure).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Instructions []PlanInstructionStatus `json:"instructions,omitempty"`

	// periodicInstructions are the last results of the plan's periodic
	// instructions.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	PeriodicInstructions []PlanPeriodicStatus `json:"periodicInstructions,omitempty"`

	// probes are the states of the plan's probes.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Probes []PlanProbeStatus `json:"probes,omitempty"`
}

// PlanFailure is why a plan failed on the machine.
type PlanFailure struct {
	// instruction names the failing instruction (its name, or
	// "instructions[i]"); empty when the plan itself or its files failed.
	// +optional
	Instruction string `json:"instruction,omitempty"`

	// exitCode of the instruction; -1 when it timed out, was killed or
	// could not start.
	// +optional
	ExitCode int32 `json:"exitCode,omitempty"`

	// message says what failed.
	// +required
	// +kubebuilder:validation:MaxLength=32768
	Message string `json:"message"`

	// output is the end of the instruction's output (stdout and stderr),
	// at most 4 KiB.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Output string `json:"output,omitempty"`

	// time of the failure.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// PlanInstructionStatus is the last run of a one-time instruction.
type PlanInstructionStatus struct {
	// name of the instruction, or "instructions[i]".
	// +required
	Name string `json:"name"`

	// exitCode of its last run.
	// +required
	ExitCode int32 `json:"exitCode"`

	// output is the end of its output, at most 2 KiB.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Output string `json:"output,omitempty"`

	// finishedTime is when its last run ended.
	// +optional
	FinishedTime *metav1.Time `json:"finishedTime,omitempty"`

	// durationMilliseconds is how long its last run took.
	// +optional
	DurationMilliseconds int64 `json:"durationMilliseconds,omitempty"`
}

// PlanPeriodicStatus is the last run of a periodic instruction.
type PlanPeriodicStatus struct {
	// name of the instruction.
	// +required
	Name string `json:"name"`

	// exitCode of its last run.
	// +required
	ExitCode int32 `json:"exitCode"`

	// output is the end of its output, at most 2 KiB (with
	// saveStderrOutput, or on failure).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Output string `json:"output,omitempty"`

	// lastRunTime is when it last ran.
	// +optional
	LastRunTime *metav1.Time `json:"lastRunTime,omitempty"`

	// lastSuccessTime is when it last exited 0.
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`

	// failures counts its consecutive failures.
	// +optional
	Failures int32 `json:"failures,omitempty"`
}

// PlanProbeStatus is the state of one probe.
type PlanProbeStatus struct {
	// name of the probe.
	// +required
	Name string `json:"name"`

	// healthy is true after successThreshold successes in a row, false
	// after failureThreshold failures in a row.
	// +required
	Healthy bool `json:"healthy"`

	// successCount counts consecutive successes (up to the threshold).
	// +optional
	SuccessCount int32 `json:"successCount,omitempty"`

	// failureCount counts consecutive failures (up to the threshold).
	// +optional
	FailureCount int32 `json:"failureCount,omitempty"`

	// lastError is why the last probe failed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`
}

// +kubebuilder:object:root=true

// MachineInventoryList is a list of MachineInventories.
type MachineInventoryList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MachineInventory `json:"items"`
}

// GetConditions returns the machine inventory's status conditions.
func (in *MachineInventory) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the machine inventory's status conditions.
func (in *MachineInventory) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
