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

// BMCPowerState is a machine's power state as its BMC reports it, or the
// one desired.
// +kubebuilder:validation:Enum=On;Off
type BMCPowerState string

const (
	// PowerOn: the machine is powered on.
	PowerOn BMCPowerState = "On"
	// PowerOff: the machine is powered off.
	PowerOff BMCPowerState = "Off"
)

// BMCBootSource is where a one-time boot request boots from.
// +kubebuilder:validation:Enum=VirtualMedia;PXE
type BMCBootSource string

const (
	// BootVirtualMedia boots once from an ISO inserted into the BMC's
	// virtual CD by URL.
	BootVirtualMedia BMCBootSource = "VirtualMedia"
	// BootPXE boots once from the network.
	BootPXE BMCBootSource = "PXE"
)

// BMCActionResult is how the BMC's last action ended.
// +kubebuilder:validation:Enum=Pending;Succeeded;Failed
type BMCActionResult string

const (
	// ActionPending: the action was sent; its effect is not seen yet.
	ActionPending BMCActionResult = "Pending"
	// ActionSucceeded: the action's effect was seen on the BMC.
	ActionSucceeded BMCActionResult = "Succeeded"
	// ActionFailed: the BMC refused the action or its effect never came.
	ActionFailed BMCActionResult = "Failed"
)

// Annotations the registration server sets on MachineInventories from the
// machine's SMBIOS data, which a BMC's facts are matched against.
const (
	// AnnotationSystemUUID is the SMBIOS system UUID (lowercase).
	AnnotationSystemUUID = "machines.edgefleet.io/system-uuid"
	// AnnotationSystemSerial is the SMBIOS system serial number.
	AnnotationSystemSerial = "machines.edgefleet.io/system-serial"
)

// AnnotationPowerCycle on a BMC requests one power cycle (forced off, then
// on, both verified) per value; health remediation sets it. The result is
// in status.powerCycle.
const AnnotationPowerCycle = "machines.edgefleet.io/power-cycle"

// BMC is a machine's baseboard management controller, reached over
// Redfish: the manager reads the machine's power state and system facts,
// applies the desired power state, boots the machine once from virtual
// media (e.g. a SeedImage's ISO) or PXE, and links the BMC to the
// machine's MachineInventory by its serial number or UUID (or
// spec.inventoryRef). Declare it before or after the machine registers.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Power",type=string,JSONPath=`.status.powerState`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.power`
// +kubebuilder:printcolumn:name="Inventory",type=string,JSONPath=`.status.inventoryRef.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`,priority=10
// +kubebuilder:printcolumn:name="Serial",type=string,JSONPath=`.status.system.serialNumber`,priority=10
// +kubebuilder:printcolumn:name="Last Action",type=string,JSONPath=`.status.lastAction.action`,priority=10
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BMC struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares how to reach the BMC and what it should do.
	// +required
	Spec BMCSpec `json:"spec,omitzero"`

	// status reports the machine's power state and facts as the BMC sees
	// them, the linked inventory and the last action.
	// +optional
	Status BMCStatus `json:"status,omitzero"`
}

// BMCSpec is the desired state of a BMC.
// +kubebuilder:validation:XValidation:rule="!has(self.caBundle) || !has(self.certificateSHA256)",message="caBundle and certificateSHA256 are exclusive: trust the BMC by a CA or pin its certificate, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.boot) || !has(self.power) || self.power == 'On'",message="a boot request powers the machine on: remove spec.power or set it to On"
type BMCSpec struct {
	// address is the BMC's Redfish service: https://host[:port], optionally
	// followed by the system's path (/redfish/v1/Systems/<id>) when the BMC
	// manages more than one system.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https://[^/?#@\s]+(/redfish/v1/Systems/[^/?#\s]+)?/?$`
	Address string `json:"address,omitempty"`

	// credentialsSecretRef names a Secret with the keys username and
	// password. It must be in the BMC's namespace (namespace empty or the
	// BMC's own). They are never copied to status, events
	// or logs.
	// +required
	CredentialsSecretRef ObjectReference `json:"credentialsSecretRef,omitzero"`

	// caBundle is PEM-encoded CA certificates that sign the BMC's
	// certificate. Without caBundle and certificateSHA256 the manager's
	// system roots are used.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	CABundle string `json:"caBundle,omitempty"`

	// certificateSHA256 pins the BMC's own (self-signed) certificate: the
	// hex SHA-256 of its DER encoding (openssl x509 -noout -fingerprint
	// -sha256, without colons, lowercase).
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	CertificateSHA256 string `json:"certificateSHA256,omitempty"`

	// inventoryRef links the BMC to a MachineInventory of its namespace
	// explicitly; the BMC's serial number and UUID must then agree with the
	// inventory's SMBIOS data. Without it the BMC is linked to the one
	// inventory whose SMBIOS UUID (else serial number) equals the BMC's.
	// +optional
	InventoryRef *ObjectReference `json:"inventoryRef,omitempty"`

	// power is the desired power state: On or Off. Empty leaves the power
	// as it is. Off shuts down gracefully first, then forces the power
	// off after gracefulShutdownTimeoutSeconds.
	// +optional
	Power BMCPowerState `json:"power,omitempty"`

	// gracefulShutdownTimeoutSeconds is how long a graceful shutdown may
	// take before the power is forced off. 0 forces it off at once.
	// Defaults to 120.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	GracefulShutdownTimeoutSeconds *int32 `json:"gracefulShutdownTimeoutSeconds,omitempty"`

	// boot requests one boot from virtual media or PXE: the machine is
	// powered off, the media inserted, the boot override set for the next
	// boot only, and the machine powered on. It is done once per id.
	// +optional
	Boot *BMCBootRequest `json:"boot,omitempty"`
}

// BMCBootRequest is a one-time boot.
// +kubebuilder:validation:XValidation:rule="has(self.source) && self.source == 'PXE' ? !has(self.seedImageRef) && !has(self.image) : (has(self.seedImageRef) != has(self.image))",message="source VirtualMedia needs exactly one of seedImageRef and image; source PXE takes neither"
type BMCBootRequest struct {
	// id names the request: the boot is done once per id. Change it to boot
	// again from the same media.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	ID string `json:"id,omitempty"`

	// source is VirtualMedia (the default) or PXE.
	// +optional
	Source BMCBootSource `json:"source,omitempty"`

	// seedImageRef names a SeedImage of the BMC's namespace (type iso)
	// whose download URL is inserted as virtual media. The boot waits until
	// the SeedImage is Ready.
	// +optional
	SeedImageRef *ObjectReference `json:"seedImageRef,omitempty"`

	// image is an https URL of an ISO the BMC inserts as virtual media.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^https?://`
	Image string `json:"image,omitempty"`
}

// BMCSystem is what the BMC reports about the machine it manages.
type BMCSystem struct {
	// id is the Redfish ComputerSystem's path.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	ID string `json:"id,omitempty"`
	// manufacturer of the machine.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Manufacturer string `json:"manufacturer,omitempty"`
	// model of the machine.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model,omitempty"`
	// serialNumber of the machine.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	SerialNumber string `json:"serialNumber,omitempty"`
	// uuid is the machine's SMBIOS system UUID (lowercase).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UUID string `json:"uuid,omitempty"`
}

// BMCAction is an action the manager took through the BMC.
type BMCAction struct {
	// action is what was done: PowerOn, GracefulShutdown, ForceOff,
	// InsertMedia, SetBootOnce, Boot (a whole boot request) or PowerCycle.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Action string `json:"action,omitempty"`
	// result is Pending, Succeeded or Failed.
	// +required
	Result BMCActionResult `json:"result,omitempty"`
	// message says what happened; on failure the BMC's error (status code
	// and Redfish message IDs).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
	// time the result was reached.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// BMCBootStatus is the state of the last one-time boot request.
type BMCBootStatus struct {
	// id is the spec.boot.id the request had.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	ID string `json:"id,omitempty"`
	// image is the URL inserted (empty for PXE), without a SeedImage's
	// download token or a query.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image,omitempty"`
	// result is Pending, Succeeded (the machine was powered on with the
	// override set) or Failed.
	// +optional
	Result BMCActionResult `json:"result,omitempty"`
	// time the request was done.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// BMCPowerCycleStatus is the state of the last power-cycle request.
type BMCPowerCycleStatus struct {
	// id is the request's annotation value.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id,omitempty"`
	// result is Succeeded (the power was seen off, then on) or Failed.
	// +optional
	Result BMCActionResult `json:"result,omitempty"`
	// message says what failed.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
	// time the result was reached.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// BMCStatus is the observed state of a BMC.
type BMCStatus struct {
	// powerState is the machine's power state as the BMC reported it last:
	// On or Off (PoweringOn and PoweringOff are reported as the state they
	// leave).
	// +optional
	PowerState BMCPowerState `json:"powerState,omitempty"`

	// system is what the BMC reports about the machine.
	// +optional
	System *BMCSystem `json:"system,omitempty"`

	// inventoryRef is the MachineInventory the BMC is linked to.
	// +optional
	InventoryRef *ObjectReference `json:"inventoryRef,omitempty"`

	// factsAgree is true when the BMC's serial number and UUID agree with
	// the linked inventory's SMBIOS data, false when they differ; unset
	// while no inventory is linked.
	// +optional
	FactsAgree *bool `json:"factsAgree,omitempty"`

	// lastAction is the last action taken through the BMC and its result.
	// +optional
	LastAction *BMCAction `json:"lastAction,omitempty"`

	// boot is the state of the last one-time boot request.
	// +optional
	Boot *BMCBootStatus `json:"boot,omitempty"`

	// powerCycle is the state of the last power-cycle request (annotation
	// machines.edgefleet.io/power-cycle).
	// +optional
	PowerCycle *BMCPowerCycleStatus `json:"powerCycle,omitempty"`

	// lastPollTime is when the BMC last answered.
	// +optional
	LastPollTime *metav1.Time `json:"lastPollTime,omitempty"`

	// consecutiveFailures counts polls in a row the BMC did not answer (or
	// refused the credentials); polls back off with it.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// conditions: Ready (the BMC answered with these credentials and
	// certificate, the power is as desired and the facts agree), and
	// Reconciling or Stalled while they are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// +kubebuilder:object:root=true

// BMCList is a list of BMCs.
type BMCList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BMC `json:"items"`
}

// GetConditions returns the BMC's status conditions.
func (in *BMC) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the BMC's status conditions.
func (in *BMC) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}

// BMC condition reasons (Ready, Reconciling, Stalled).
const (
	// BMCReadyReason (Ready True): the BMC answered, the power is as
	// desired and the facts agree with the linked inventory.
	BMCReadyReason = "BMCReady"
	// CredentialsNotFoundReason (Stalled): the credentials Secret or its
	// username/password keys are missing.
	CredentialsNotFoundReason = "CredentialsNotFound"
	// AuthenticationFailedReason (Stalled): the BMC refused the
	// credentials (401/403).
	AuthenticationFailedReason = "AuthenticationFailed"
	// BadCertificateReason (Stalled): the BMC's certificate is not signed
	// by caBundle, does not match certificateSHA256, or is not trusted.
	BadCertificateReason = "BadCertificate"
	// UnreachableReason (Ready False, Reconciling): the BMC does not answer;
	// retried with backoff.
	UnreachableReason = "Unreachable"
	// SystemNotFoundReason (Stalled): the address names no system, or the
	// service has several and the address names none.
	SystemNotFoundReason = "SystemNotFound"
	// FactsMismatchReason (Stalled): the BMC's serial number or UUID differ
	// from the linked inventory's; no action is taken.
	FactsMismatchReason = "FactsMismatch"
	// AmbiguousInventoryReason (Ready False): several inventories match the
	// BMC's facts; set spec.inventoryRef.
	AmbiguousInventoryReason = "AmbiguousInventory"
	// PowerChangingReason (Reconciling): a power action was sent and the
	// BMC has not reached the desired state yet.
	PowerChangingReason = "PowerChanging"
	// BootingReason (Reconciling): a one-time boot request is in progress.
	BootingReason = "Booting"
	// WaitingForSeedImageReason (Reconciling): the boot request's SeedImage
	// is not Ready.
	WaitingForSeedImageReason = "WaitingForSeedImage"
	// ActionFailedReason (Ready False, Reconciling): the BMC refused an
	// action; retried with backoff. The message has the Redfish error.
	ActionFailedReason = "ActionFailed"
)
