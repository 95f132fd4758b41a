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

// Plan upgrades the nodes of the cluster it lives on, node by node within
// concurrency, by running its upgrade container in one Job per node: the
// fields and semantics of system-upgrade-controller's upgrade.cattle.io/v1
// Plan, so an SUC plan converts by changing its apiVersion. The cluster
// agent runs it; the manager delivers it like any other manifest, in a
// Bundle (ADR 0014).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories={edgefleet,upgrade}
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.upgrade.image`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.latestVersion`
// +kubebuilder:printcolumn:name="Upgraded",type=integer,JSONPath=`.status.upgraded`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.total`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Plan struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to run on which nodes.
	// +required
	Spec PlanSpec `json:"spec"`

	// status is the plan's progress on this cluster.
	// +optional
	Status PlanStatus `json:"status,omitzero"`
}

// PlanSpec is the desired state of a Plan (system-upgrade-controller's
// field names).
type PlanSpec struct {
	// concurrency is the most nodes upgrading at once.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Concurrency int64 `json:"concurrency,omitempty"`

	// nodeSelector selects the nodes to upgrade; it is ANDed with
	// "kubernetes.io/hostname exists" and "plan.upgrade.cattle.io/<plan>
	// is neither disabled nor the latest hash" (a node done is not redone).
	// An empty or missing selector selects every node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// serviceAccountName runs the Jobs' pods; part of the hash.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// channel is a URL answering with a redirect whose last path element
	// is the version (SUC's channel server, e.g. update.k3s.io); polled
	// every 15 minutes. Ignored when version is set.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Channel string `json:"channel,omitempty"`

	// version is the version to apply; an untagged upgrade or prepare
	// image gets it as its tag ("+" becomes "-").
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// secrets are mounted into the Jobs at
	// /run/system-upgrade/secrets/<path or name>; their content feeds the
	// hash unless ignoreUpdates.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Secrets []SecretSpec `json:"secrets,omitempty"`

	// prepare runs as an init container before upgrade.
	// +optional
	Prepare *ContainerSpec `json:"prepare,omitempty"`

	// upgrade is the container that upgrades the node (image required).
	// +required
	Upgrade *ContainerSpec `json:"upgrade"`

	// cordon marks each node unschedulable before its Job and schedulable
	// again after it succeeded. Implied by drain.
	// +optional
	Cordon bool `json:"cordon,omitempty"`

	// drain cordons and drains each node (the eviction API, so
	// PodDisruptionBudgets are respected) before its Job.
	// +optional
	Drain *DrainSpec `json:"drain,omitempty"`

	// tolerations are added to the Jobs' pods, after the default
	// node.kubernetes.io/unschedulable:NoSchedule (a cordoned node still
	// runs its upgrade).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Tolerations []Toleration `json:"tolerations,omitempty"`

	// jobActiveDeadlineSecs bounds each Job (default 600, 0: no bound).
	// +optional
	// +kubebuilder:validation:Minimum=0
	JobActiveDeadlineSecs *int64 `json:"jobActiveDeadlineSecs,omitempty"`

	// imagePullSecrets are used to pull the Jobs' images.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	ImagePullSecrets []LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

// ContainerSpec is one container of the Job (SUC's ContainerSpec).
type ContainerSpec struct {
	// image to run; without a tag it gets the plan's latest version.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image"`

	// command overrides the image's entrypoint.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Command []string `json:"command,omitempty"`

	// args are the container's arguments.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Args []string `json:"args,omitempty"`

	// envs are extra environment variables (SUC's json name).
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Envs []EnvVar `json:"envs,omitempty"`

	// volumes mount host paths into the container.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Volumes []VolumeSpec `json:"volumes,omitempty"`
}

// EnvVar is a name and a literal value.
type EnvVar struct {
	// name of the variable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`

	// value of the variable.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Value string `json:"value,omitempty"`
}

// VolumeSpec mounts a host path (SUC's VolumeSpec).
type VolumeSpec struct {
	// name of the volume.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// source is the path on the host.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Source string `json:"source"`

	// destination is the path in the container.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Destination string `json:"destination"`
}

// SecretSpec mounts a Secret of the plan's namespace into the Jobs.
type SecretSpec struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// path under /run/system-upgrade/secrets/ (default: name).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Path string `json:"path,omitempty"`

	// ignoreUpdates leaves the Secret's content out of the hash, so
	// changing it does not re-run the plan.
	// +optional
	IgnoreUpdates bool `json:"ignoreUpdates,omitempty"`

	// defaultMode of the mounted files.
	// +optional
	DefaultMode *int32 `json:"defaultMode,omitempty"`
}

// DrainSpec says how to drain a node (kubectl drain's options, SUC's
// names).
type DrainSpec struct {
	// timeout gives up draining after this long and fails the node, as a
	// duration string ("5m"). SUC also takes an integer of nanoseconds;
	// here that is refused by the API server: write it as a string. Unset:
	// wait for ever.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// gracePeriod overrides the evicted pods' termination grace period
	// (seconds).
	// +optional
	GracePeriod *int32 `json:"gracePeriod,omitempty"`

	// deleteLocalData is the old name of deleteEmptydirData; set one.
	// +optional
	DeleteLocalData *bool `json:"deleteLocalData,omitempty"`

	// deleteEmptydirData evicts pods with emptyDir volumes (their data is
	// lost). Default true.
	// +optional
	DeleteEmptydirData *bool `json:"deleteEmptydirData,omitempty"`

	// ignoreDaemonSets leaves DaemonSet pods running instead of failing.
	// Default true.
	// +optional
	IgnoreDaemonSets *bool `json:"ignoreDaemonSets,omitempty"`

	// force evicts pods no controller owns (they are not recreated).
	// +optional
	Force bool `json:"force,omitempty"`

	// disableEviction deletes pods instead of evicting them, bypassing
	// PodDisruptionBudgets.
	// +optional
	DisableEviction bool `json:"disableEviction,omitempty"`

	// skipWaitForDeleteTimeout stops waiting for pods deleted longer ago
	// than this many seconds (0: always wait).
	// +optional
	// +kubebuilder:validation:Minimum=0
	SkipWaitForDeleteTimeout int32 `json:"skipWaitForDeleteTimeout,omitempty"`

	// podSelector limits the drain to the pods it selects.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// Toleration mirrors core/v1 Toleration (the API module imports only
// apimachinery).
type Toleration struct {
	// key is the taint key; empty with operator Exists matches every taint.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	Key string `json:"key,omitempty"`

	// operator is Exists or Equal (default Equal).
	// +optional
	// +kubebuilder:validation:Enum=Exists;Equal
	Operator string `json:"operator,omitempty"`

	// value is the taint value, with operator Equal.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Value string `json:"value,omitempty"`

	// effect is the taint effect to match (empty: all).
	// +optional
	// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
	Effect string `json:"effect,omitempty"`

	// tolerationSeconds bounds a NoExecute toleration.
	// +optional
	TolerationSeconds *int64 `json:"tolerationSeconds,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// NodeUpgradeState is where one node is in a plan.
// +kubebuilder:validation:Enum=Cordoning;Draining;Upgrading;Failed
type NodeUpgradeState string

const (
	// NodeCordoning: the node is being marked unschedulable.
	NodeCordoning NodeUpgradeState = "Cordoning"
	// NodeDraining: the node's pods are being evicted.
	NodeDraining NodeUpgradeState = "Draining"
	// NodeUpgrading: the node's Job runs.
	NodeUpgrading NodeUpgradeState = "Upgrading"
	// NodeFailed: the node's drain or Job failed; the plan stops.
	NodeFailed NodeUpgradeState = "Failed"
)

// PlanStatus is the observed state of a Plan.
type PlanStatus struct {
	// conditions: SUC's LatestResolved, Validated and Complete (False with
	// reason JobFailed or DrainFailed when a node failed), and edgefleet's
	// Ready (every selected node carries the latest hash), Reconciling
	// (nodes are upgrading) and Stalled (a node failed or the spec is
	// invalid), which kstatus and so the Bundle read.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// latestVersion is the version applied: spec.version or the channel's.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	LatestVersion string `json:"latestVersion,omitempty"`

	// latestHash identifies what is applied (version, service account,
	// secrets); a node labelled plan.upgrade.cattle.io/<plan>=<latestHash>
	// is done.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	LatestHash string `json:"latestHash,omitempty"`

	// applying are the nodes being upgraded now (SUC's field).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	Applying []string `json:"applying,omitempty"`

	// total is the number of nodes the selector selects.
	// +optional
	Total int32 `json:"total,omitempty"`

	// upgraded is the number of those carrying the latest hash.
	// +optional
	Upgraded int32 `json:"upgraded,omitempty"`

	// nodes is the state of each node being upgraded or failed (nodes done
	// or waiting are counted only, so status stays small).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	Nodes []NodeUpgradeStatus `json:"nodes,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// NodeUpgradeStatus is one node's state in a plan.
type NodeUpgradeStatus struct {
	// name of the node.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// state is Cordoning, Draining, Upgrading or Failed.
	// +required
	State NodeUpgradeState `json:"state"`

	// since is when the node entered its state (a drain's timeout counts
	// from it).
	// +optional
	Since *metav1.Time `json:"since,omitempty"`

	// job is the node's Job in the plan's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Job string `json:"job,omitempty"`

	// message says why, for a failed node.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// +kubebuilder:object:root=true

// PlanList is a list of Plans.
type PlanList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Plan `json:"items"`
}

// GetConditions returns the status conditions.
func (in *Plan) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *Plan) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
