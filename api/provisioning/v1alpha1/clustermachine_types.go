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

// Role is a machine's part in its cluster.
// +kubebuilder:validation:Enum=server;agent
type Role string

const (
	// RoleServer runs the control plane (and a kubelet).
	RoleServer Role = "server"
	// RoleAgent runs a kubelet only.
	RoleAgent Role = "agent"
)

// ClusterMachine is one MachineInventory adopted by a ProvisionedCluster
// (Cluster API's Machine). Its name is the inventory's, so one inventory can
// back at most one ClusterMachine; it is owned by its ProvisionedCluster and
// written only by the formation controller.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=cmachine,categories={edgefleet,provisioning}
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterName`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.pool`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Node-Ready",type=string,JSONPath=`.status.conditions[?(@.type=="NodeReady")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=10
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`,priority=10
// +kubebuilder:printcolumn:name="Healthy",type=string,JSONPath=`.status.conditions[?(@.type=="HealthCheckSucceeded")].status`,priority=10
// +kubebuilder:printcolumn:name="Remediation",type=string,JSONPath=`.status.remediation.phase`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterMachine struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the machine's part in its cluster.
	// +required
	Spec ClusterMachineSpec `json:"spec"`

	// status is how far the machine got.
	// +optional
	Status ClusterMachineStatus `json:"status,omitzero"`
}

// ClusterMachineSpec is written by the formation controller.
type ClusterMachineSpec struct {
	// clusterName is the ProvisionedCluster.
	// +required
	ClusterName string `json:"clusterName"`
	// pool is "control-plane" or a worker pool's name.
	// +required
	Pool string `json:"pool"`
	// role is server or agent.
	// +required
	Role Role `json:"role"`
	// init marks the server that created the cluster.
	// +optional
	Init bool `json:"init,omitempty"`
	// inventoryName is the adopted MachineInventory (same namespace; also
	// this object's name).
	// +required
	InventoryName string `json:"inventoryName"`
	// version is the Kubernetes version of the plan written for the
	// machine; it moves to the cluster's version when the rolling upgrade
	// reaches this machine.
	// +optional
	Version string `json:"version,omitempty"`
}

// ClusterMachineStatus is how far the machine got.
type ClusterMachineStatus struct {
	// conditions: Ready, Adopted, Bootstrapped, NodeReady, Upgraded,
	// HealthCheckSucceeded (pools with a healthCheck).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// version is the version the machine bootstrapped at (its plan
	// applied).
	// +optional
	Version string `json:"version,omitempty"`
	// nodeName is the Kubernetes node name.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// address is the machine's address (from its inventory).
	// +optional
	Address string `json:"address,omitempty"`
	// planChecksum is the checksum of the plan formation wrote.
	// +optional
	PlanChecksum string `json:"planChecksum,omitempty"`
	// remediation is the health remediation under way (unset when the
	// machine is healthy or none is allowed).
	// +optional
	Remediation *Remediation `json:"remediation,omitempty"`
	// observedGeneration is the generation acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// RemediationPhase is the step a remediation is at.
// +kubebuilder:validation:Enum=PowerCycling;WaitingForHealthy;Replacing
type RemediationPhase string

const (
	// PhasePowerCycling: the node is cordoned and the BMC asked to cycle
	// the power.
	PhasePowerCycling RemediationPhase = "PowerCycling"
	// PhaseWaitingForHealthy: the power was cycled; the node has
	// powerCycleTimeout to become healthy.
	PhaseWaitingForHealthy RemediationPhase = "WaitingForHealthy"
	// PhaseReplacing: the node is drained and removed, the machine released
	// and the pool adopts a spare.
	PhaseReplacing RemediationPhase = "Replacing"
)

// Remediation is one machine's health remediation.
type Remediation struct {
	// phase is the step under way.
	// +required
	Phase RemediationPhase `json:"phase"`
	// reason is why the machine is unhealthy.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
	// started is when the remediation began.
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
	// bmcName is the BMC used to power-cycle the machine.
	// +optional
	BMCName string `json:"bmcName,omitempty"`
	// powerCycleID is the power-cycle request sent to the BMC.
	// +optional
	PowerCycleID string `json:"powerCycleID,omitempty"`
	// powerCycled is when the BMC reported the power cycled.
	// +optional
	PowerCycled *metav1.Time `json:"powerCycled,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterMachineList is a list of ClusterMachines.
type ClusterMachineList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterMachine `json:"items"`
}
