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

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

// ManagedOSImage rolls an OS image out to the machines its targets select,
// concurrency machines at a time, through each machine's plan (Elemental's
// ManagedOSImage, without the system-upgrade-controller indirection: the
// upgrade runs through the machine's own node agent; machines that are
// Kubernetes nodes of a formed cluster are cordoned and drained first
// when spec.cordon / spec.drain say so).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=mosi,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.status.image`
// +kubebuilder:printcolumn:name="Upgraded",type=integer,JSONPath=`.status.upgraded`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.total`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ManagedOSImage struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the image to roll out and to which machines.
	// +required
	Spec ManagedOSImageSpec `json:"spec"`

	// status is the rollout's progress.
	// +optional
	Status ManagedOSImageStatus `json:"status,omitzero"`
}

// ManagedOSImageSpec is the desired state of a ManagedOSImage.
type ManagedOSImageSpec struct {
	// osImage is the OS image reference to install. It wins over
	// managedOSVersionName when both are set (as in Elemental).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	OSImage string `json:"osImage,omitempty"`

	// managedOSVersionName names a ManagedOSVersion in the same namespace;
	// its metadata.upgradeImage is installed.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ManagedOSVersionName string `json:"managedOSVersionName,omitempty"`

	// targets selects the machines (MachineInventories of the namespace)
	// by label; an empty selector ({}) selects every machine of the
	// namespace. Targeting clusters (Elemental's clusterTargets) is not
	// implemented yet.
	// +required
	Targets ManagedOSImageTargets `json:"targets"`

	// concurrency is how many machines upgrade at the same time.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Concurrency int32 `json:"concurrency,omitempty"`

	// cordon marks the Node of each machine that is a Kubernetes node of a
	// formed cluster (a ProvisionedCluster claimed it) unschedulable
	// before its upgrade, and schedulable again once the machine reports
	// the end of its upgrade (a node that was cordoned already stays
	// cordoned). Machines that are not nodes are upgraded without it.
	// +optional
	Cordon *bool `json:"cordon,omitempty"`

	// drain evicts the pods of such a node before its upgrade, as
	// `kubectl drain` does (PodDisruptionBudgets are respected); it
	// implies cordon. A drain that passes drain.timeout, or that a pod
	// refuses (a DaemonSet pod without ignoreDaemonSets, a pod no
	// controller owns without force, emptyDir data without
	// deleteEmptydirData), fails the machine and halts the rollout.
	// +optional
	Drain *upgradev1.DrainSpec `json:"drain,omitempty"`

	// cordonDrain true is the same as cordon: true and drain: {} (the
	// defaults: ignore DaemonSets, delete emptyDir data, no timeout).
	// +optional
	CordonDrain *bool `json:"cordonDrain,omitempty"`

	// paused stops starting upgrades on more machines; machines upgrading
	// already finish (an OS write is not interrupted).
	// +optional
	Paused bool `json:"paused,omitempty"`

	// allowRetryAfterRollback lets the rollout upgrade a machine whose
	// previous upgrade was rolled back by the bootloader; by default such a
	// machine is held and reported.
	// +optional
	AllowRetryAfterRollback bool `json:"allowRetryAfterRollback,omitempty"`
}

// ManagedOSImageTargets selects machines.
type ManagedOSImageTargets struct {
	// selector is a LabelSelector over MachineInventory labels.
	// +required
	Selector *metav1.LabelSelector `json:"selector"`
}

// MachineUpgradeState is where one machine is in a rollout.
// +kubebuilder:validation:Enum=Waiting;Draining;Upgrading;Upgraded;Failed;RolledBack;Held
type MachineUpgradeState string

const (
	// MachineUpgradeWaiting: not started yet.
	MachineUpgradeWaiting MachineUpgradeState = "Waiting"
	// MachineUpgradeDraining: the machine's node is cordoned and its pods
	// are being evicted; the upgrade plan is written once it is drained.
	MachineUpgradeDraining MachineUpgradeState = "Draining"
	// MachineUpgradeUpgrading: the upgrade plan is on the machine.
	MachineUpgradeUpgrading MachineUpgradeState = "Upgrading"
	// MachineUpgradeUpgraded: the machine runs the image from a confirmed
	// slot.
	MachineUpgradeUpgraded MachineUpgradeState = "Upgraded"
	// MachineUpgradeFailed: the upgrade plan or the image write failed.
	MachineUpgradeFailed MachineUpgradeState = "Failed"
	// MachineUpgradeRolledBack: the new slot did not confirm a boot.
	MachineUpgradeRolledBack MachineUpgradeState = "RolledBack"
	// MachineUpgradeHeld: a previous upgrade of the machine rolled back and
	// allowRetryAfterRollback is false.
	MachineUpgradeHeld MachineUpgradeState = "Held"
)

// ManagedOSImageStatus is the observed state of a ManagedOSImage.
type ManagedOSImageStatus struct {
	// conditions: Ready (every selected machine runs the image),
	// Reconciling (the rollout is under way) and Stalled (the rollout is
	// halted: a machine failed or rolled back, or the spec cannot be acted
	// on).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// image is the resolved OS image reference being rolled out.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image,omitempty"`

	// total is the number of selected machines.
	// +optional
	Total int32 `json:"total,omitempty"`

	// upgraded is the number of selected machines running the image.
	// +optional
	Upgraded int32 `json:"upgraded,omitempty"`

	// upgrading is the number of machines upgrading now.
	// +optional
	Upgrading int32 `json:"upgrading,omitempty"`

	// failed is the number of machines whose upgrade failed or rolled back
	// in this rollout.
	// +optional
	Failed int32 `json:"failed,omitempty"`

	// machines is the state of every selected machine not in state
	// Upgraded or Waiting (those are counted only, so status stays small
	// on large fleets).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	Machines []MachineUpgradeStatus `json:"machines,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// MachineUpgradeStatus is one machine's state in a rollout.
type MachineUpgradeStatus struct {
	// name of the MachineInventory.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// state is Draining, Upgrading, Failed, RolledBack or Held.
	// +required
	State MachineUpgradeState `json:"state"`

	// message says why, from the machine's report.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// +kubebuilder:object:root=true

// ManagedOSImageList is a list of ManagedOSImages.
type ManagedOSImageList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ManagedOSImage `json:"items"`
}

// GetConditions returns the status conditions.
func (in *ManagedOSImage) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *ManagedOSImage) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
