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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Distro is the Kubernetes distribution a ProvisionedCluster runs.
// +kubebuilder:validation:Enum=edgefleet;k3s;rke2
type Distro string

const (
	// DistroEdgefleet is the built-in distribution: upstream Kubernetes,
	// containerd and a real kubelet, run by `edgefleet-node kubernetes up`.
	DistroEdgefleet Distro = "edgefleet"
	// DistroK3s is K3s, installed by its install script or from the OS image.
	DistroK3s Distro = "k3s"
	// DistroRKE2 is RKE2, installed by its install script or from the OS image.
	DistroRKE2 Distro = "rke2"
)

// ProvisionedCluster is a Kubernetes cluster formed from registered
// machines: a control-plane pool and worker pools each adopt MachineInventories
// chosen by label, the machines bootstrap through their plans, and the
// cluster joins the fleet as a fleet Cluster (Cluster API's Cluster +
// control plane + MachineDeployments in one object, docs/adr/0012).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=pcluster,categories={edgefleet,provisioning}
// +kubebuilder:printcolumn:name="Distro",type=string,JSONPath=`.spec.distro`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="CP-Ready",type=integer,JSONPath=`.status.controlPlane.ready`
// +kubebuilder:printcolumn:name="CP-Desired",type=integer,JSONPath=`.status.controlPlane.replicas`
// +kubebuilder:printcolumn:name="Workers-Ready",type=integer,JSONPath=`.status.workersReady`
// +kubebuilder:printcolumn:name="Fleet-Cluster",type=string,JSONPath=`.status.fleetClusterRef.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=10
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.status.server`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ProvisionedCluster struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the cluster wanted.
	// +required
	Spec ProvisionedClusterSpec `json:"spec"`

	// status is what formation reached.
	// +optional
	Status ProvisionedClusterStatus `json:"status,omitzero"`
}

// ProvisionedClusterSpec is the desired state of a ProvisionedCluster.
//
// +kubebuilder:validation:XValidation:rule="self.distro != 'edgefleet' || self.controlPlane.replicas == 1 || self.controlPlane.replicas == 3",message="the edgefleet distro runs 1 or 3 control-plane machines (etcd needs a majority)"
// +kubebuilder:validation:XValidation:rule="self.distro != 'edgefleet' || self.version.matches('^v1[.][0-9]+[.][0-9]+$')",message="an edgefleet version looks like v1.37.1"
// +kubebuilder:validation:XValidation:rule="self.distro != 'k3s' || self.version.matches('^v1[.][0-9]+[.][0-9]+[+]k3s[0-9]+$')",message="a k3s version looks like v1.33.5+k3s1"
// +kubebuilder:validation:XValidation:rule="self.distro != 'rke2' || self.version.matches('^v1[.][0-9]+[.][0-9]+[+]rke2r[0-9]+$')",message="an rke2 version looks like v1.33.5+rke2r1"
// +kubebuilder:validation:XValidation:rule="self.distro == oldSelf.distro",message="distro cannot change: form a new cluster"
type ProvisionedClusterSpec struct {
	// distro is the Kubernetes distribution: edgefleet, k3s or rke2.
	// +required
	Distro Distro `json:"distro"`

	// version is the Kubernetes version in the distro's spelling
	// (v1.37.1, v1.33.5+k3s1, v1.33.5+rke2r1). Changing it is a rolling
	// upgrade: control plane first, then workers.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version"`

	// controlPlane is the pool of servers (Cluster API's control plane).
	// +required
	ControlPlane MachinePool `json:"controlPlane"`

	// workers are the pools of agents (Cluster API's MachineDeployments).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Workers []WorkerPool `json:"workers,omitempty"`

	// controlPlaneEndpoint is the API address nodes and users use; unset,
	// it is the init server's address at port 6443.
	// +optional
	ControlPlaneEndpoint *APIEndpoint `json:"controlPlaneEndpoint,omitempty"`

	// clusterNetwork holds the pod and service CIDRs (distro defaults when
	// unset: 10.42.0.0/16 and 10.43.0.0/16).
	// +optional
	ClusterNetwork ClusterNetwork `json:"clusterNetwork,omitzero"`

	// registries are image registry mirrors for every node.
	// +optional
	// +listType=map
	// +listMapKey=host
	// +kubebuilder:validation:MaxItems=64
	Registries []RegistryMirror `json:"registries,omitempty"`

	// binaries says where nodes get the distro: an OCI image or a folder
	// already on the machine (an OS image that carries them: k3s/rke2
	// air-gap install). Unset: edgefleet uses the manager's configured
	// release for the version; k3s/rke2 use their install scripts.
	// +optional
	Binaries *Binaries `json:"binaries,omitempty"`

	// rolloutStrategy tunes rolling upgrades and scale-down.
	// +optional
	RolloutStrategy RolloutStrategy `json:"rolloutStrategy,omitzero"`

	// fleet configures the fleet Cluster the formed cluster becomes.
	// +optional
	Fleet FleetSpec `json:"fleet,omitzero"`

	// paused stops adoption, plan changes and releases; status is still
	// reported.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// MachinePool is a set of machines with one role.
type MachinePool struct {
	// replicas is how many machines the pool adopts.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Replicas int32 `json:"replicas"`

	// machineSelector chooses MachineInventories of the namespace by label
	// (Elemental's MachineInventorySelectorTemplate selector). Only
	// inventories that are Ready and not in another cluster are adopted.
	// +required
	MachineSelector metav1.LabelSelector `json:"machineSelector"`

	// nodeLabels are added to each node's labels (besides the inventory's
	// own labels, which every node carries).
	// +optional
	NodeLabels map[string]string `json:"nodeLabels,omitempty"`

	// nodeTaints are the nodes' taints.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	NodeTaints []Taint `json:"nodeTaints,omitempty"`

	// config is free-form server/agent configuration passed through to
	// k3s's or rke2's config.yaml (keys as their docs name them); formation's
	// own keys (token, server, node-name…) win.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Config *runtime.RawExtension `json:"config,omitempty"`

	// healthCheck turns on health remediation for the pool (Cluster API's
	// MachineHealthCheck semantics, docs/adr/0015): unhealthy machines are
	// power-cycled through their BMC, then replaced by a spare. Unset: no
	// remediation.
	// +optional
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// HealthCheck is when a pool's machines count as unhealthy and how many
// may be remediated at once.
type HealthCheck struct {
	// unhealthyNodeConditions: a node with one of these conditions for at
	// least its timeout is unhealthy. Default: Ready False and Ready
	// Unknown for 5m.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	UnhealthyNodeConditions []UnhealthyNodeCondition `json:"unhealthyNodeConditions,omitempty"`

	// nodeStartupTimeout: a machine whose node has not appeared in the
	// cluster this long after it was adopted is unhealthy (default 10m;
	// 0s turns the check off).
	// +optional
	NodeStartupTimeout *metav1.Duration `json:"nodeStartupTimeout,omitempty"`

	// maxUnhealthy is how many machines of the pool may be unhealthy for
	// remediation to go on: a count or a percentage of the pool's machines,
	// rounded up (default 40%). Above it nothing is remediated
	// (RemediationAllowed False): a site that went dark is not a reason to
	// replace its machines. A machine whose node shows a listed condition
	// counts before its timeout ran out, and so do a machine whose
	// kubelet's Lease heartbeat is silent (not renewed for three quarters
	// of its duration, before its node turns Unknown) and, with
	// nodeAgentSilentTimeout set, one whose node agent missed two
	// heartbeats. TooManyUnhealthy's message names each machine with its
	// reason.
	// +optional
	// +kubebuilder:validation:XIntOrString
	MaxUnhealthy *intstr.IntOrString `json:"maxUnhealthy,omitempty"`

	// powerCycleTimeout is how long a machine power-cycled through its BMC
	// has to become healthy before it is replaced (default 5m).
	// +optional
	PowerCycleTimeout *metav1.Duration `json:"powerCycleTimeout,omitempty"`

	// nodeAgentSilentTimeout: a machine whose node agent (edgefleet-node)
	// has not reported to the manager (its MachineInventory's
	// status.lastSeen, refreshed by the agent's heartbeat at least every
	// minute) for this long is unhealthy. Unset or 0s: off (the default: a
	// stopped node agent does not stop the machine's Kubernetes, and agents
	// older than the heartbeat refresh lastSeen only when their plan
	// report changes). At least 3m when set (three heartbeats).
	// +optional
	NodeAgentSilentTimeout *metav1.Duration `json:"nodeAgentSilentTimeout,omitempty"`
}

// UnhealthyNodeCondition is a node condition that makes a machine
// unhealthy when it lasts its timeout.
type UnhealthyNodeCondition struct {
	// type is the node condition type, e.g. Ready.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=316
	Type string `json:"type"`
	// status is the condition status: True, False or Unknown.
	// +required
	// +kubebuilder:validation:Enum=True;False;Unknown
	Status string `json:"status"`
	// timeout is how long the condition must last.
	// +required
	Timeout metav1.Duration `json:"timeout"`
}

// WorkerPool is a named pool of agents.
type WorkerPool struct {
	// name identifies the pool (a DNS label).
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=40
	Name string `json:"name"`

	// Fields as MachinePool.
	MachinePool `json:",inline"`
}

// Taint is a node taint.
type Taint struct {
	// key is the taint key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=316
	Key string `json:"key"`
	// value is the taint value.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Value string `json:"value,omitempty"`
	// effect is NoSchedule, PreferNoSchedule or NoExecute.
	// +required
	// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
	Effect string `json:"effect"`
}

// APIEndpoint is a host and port.
type APIEndpoint struct {
	// host is a DNS name or IP address.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// port is the API port (default 6443).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// ClusterNetwork holds the cluster's CIDRs.
type ClusterNetwork struct {
	// pods is the pod CIDR.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Pods string `json:"pods,omitempty"`
	// services is the service CIDR.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Services string `json:"services,omitempty"`
	// dnsImage is the cluster DNS (CoreDNS) image the edgefleet distro's
	// init server deploys as kube-system/coredns behind the kube-dns
	// Service; unset: registry.k8s.io/coredns/coredns at the distro's
	// CoreDNS version (pulled through registries like any image).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`
	DNSImage string `json:"dnsImage,omitempty"`
}

// RegistryMirror redirects pulls from a registry host.
type RegistryMirror struct {
	// host is the registry pulled from, e.g. docker.io.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// endpoints are the mirrors' URLs, tried in order.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Endpoints []string `json:"endpoints"`
}

// Binaries is where nodes get the distribution's binaries.
//
// +kubebuilder:validation:XValidation:rule="has(self.image) != has(self.dir)",message="set exactly one of image or dir"
type Binaries struct {
	// image is an OCI image holding the binaries (edgefleet distro).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image,omitempty"`
	// dir is an absolute folder on the machine holding them (air-gap).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/`
	Dir string `json:"dir,omitempty"`
}

// RolloutStrategy tunes upgrades and scale-down.
type RolloutStrategy struct {
	// concurrency is how many machines of a pool upgrade at once (default 1;
	// the control plane always upgrades one at a time).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Concurrency int32 `json:"concurrency,omitempty"`
	// drainTimeout bounds draining a node before it is upgraded or
	// removed (default 5m); after it the node is upgraded or removed anyway.
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`
}

// FleetSpec configures the fleet Cluster.
type FleetSpec struct {
	// labels are set on the fleet Cluster (bundles target them).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// ProvisionedClusterStatus is what formation reached.
type ProvisionedClusterStatus struct {
	// conditions: Ready, Reconciling, Stalled, ControlPlaneReady,
	// WorkersReady, FleetJoined, RemediationAllowed (pools with a
	// healthCheck).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// controlPlane is the control-plane pool's progress.
	// +optional
	ControlPlane PoolStatus `json:"controlPlane,omitzero"`

	// workers is each worker pool's progress.
	// +optional
	// +listType=map
	// +listMapKey=name
	Workers []PoolStatus `json:"workers,omitempty"`

	// workersReady counts ready workers of every pool.
	// +optional
	WorkersReady int32 `json:"workersReady,omitempty"`

	// server is the cluster's API URL.
	// +optional
	Server string `json:"server,omitempty"`

	// fleetClusterRef names the fleet Cluster (same namespace) the formed
	// cluster registered as.
	// +optional
	FleetClusterRef *LocalObjectReference `json:"fleetClusterRef,omitempty"`

	// availableVersions lists the versions the manager can install for the
	// distro, when the manager is configured with a list.
	// +optional
	AvailableVersions []string `json:"availableVersions,omitempty"`

	// etcdMemberRemovals are the etcd members of edgefleet-distro servers
	// that were replaced while dead (a dead server cannot leave etcd
	// itself): the next server that joins removes them, through the
	// surviving servers, before it adds itself. An entry is marked removed
	// (Event EtcdMemberRemoved) once that server has bootstrapped, and
	// stays while that server is in the cluster (its plan carries the
	// removal).
	// +optional
	// +listType=map
	// +listMapKey=peerURL
	// +kubebuilder:validation:MaxItems=16
	EtcdMemberRemovals []EtcdMemberRemoval `json:"etcdMemberRemovals,omitempty"`

	// observedGeneration is the generation acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// EtcdMemberRemoval is the etcd member of a dead server that was replaced
// or scaled down: it could not leave etcd itself.
type EtcdMemberRemoval struct {
	// peerURL is the member's peer URL (https://ip:2380).
	// +required
	// +kubebuilder:validation:MaxLength=256
	PeerURL string `json:"peerURL"`
	// machine is the replaced server's MachineInventory.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Machine string `json:"machine"`
	// since is when the server was replaced or released.
	// +required
	Since metav1.Time `json:"since"`
	// removedBy is the server (ClusterMachine) whose plan removes the
	// member: the next joining server, before it adds itself; when none
	// joins, a healthy running server (byRunningServer).
	// +optional
	RemovedBy string `json:"removedBy,omitempty"`
	// byRunningServer: removedBy was already running in the cluster; it
	// removes the member with a plan instruction that restarts nothing
	// (`edgefleet-node kubernetes remove-etcd-members`).
	// +optional
	ByRunningServer bool `json:"byRunningServer,omitempty"`
	// removed is when removedBy applied the plan that removed the member.
	// +optional
	Removed *metav1.Time `json:"removed,omitempty"`
}

// PoolStatus is one pool's progress (clusterctl describe's per-pool row).
type PoolStatus struct {
	// name is the pool ("control-plane" for the control plane).
	// +required
	Name string `json:"name"`
	// replicas wanted.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// current adopted machines.
	// +optional
	Current int32 `json:"current,omitempty"`
	// ready machines: bootstrapped and their node Ready.
	// +optional
	Ready int32 `json:"ready,omitempty"`
	// updated machines: bootstrapped at spec.version.
	// +optional
	Updated int32 `json:"updated,omitempty"`
	// matchingAvailable counts Ready inventories the selector matches that
	// no cluster has taken.
	// +optional
	MatchingAvailable int32 `json:"matchingAvailable,omitempty"`
	// message says what the pool waits for.
	// +optional
	Message string `json:"message,omitempty"`
	// unhealthy machines by the pool's healthCheck.
	// +optional
	Unhealthy int32 `json:"unhealthy,omitempty"`
	// remediating machines (power-cycle or replacement under way).
	// +optional
	Remediating int32 `json:"remediating,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name of the object.
	// +required
	Name string `json:"name"`
}

// +kubebuilder:object:root=true

// ProvisionedClusterList is a list of ProvisionedClusters.
type ProvisionedClusterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ProvisionedCluster `json:"items"`
}
