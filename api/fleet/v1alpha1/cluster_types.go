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
)

// Cluster display states that are not bundle states.
const (
	// ClusterStateWaitCheckIn is shown while no agent has checked in for the
	// cluster yet.
	ClusterStateWaitCheckIn = "WaitCheckIn"

	// ClusterStateOffline is shown when the agent's last heartbeat is older
	// than the offline threshold.
	ClusterStateOffline = "Offline"
)

// Cluster is a downstream Kubernetes cluster managed by edgefleet. A Cluster
// is created when an agent registers (or by an administrator); its agent
// pulls the BundleDeployments in the cluster's namespace on the manager and
// reports back. Bundles target Clusters by name, label or ClusterGroup.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=fc,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Bundles-Ready",type=string,JSONPath=`.status.display.readyBundles`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.display.state`
// +kubebuilder:printcolumn:name="Connected",type=string,JSONPath=`.status.conditions[?(@.type=="Connected")].status`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.status.agent.version`
// +kubebuilder:printcolumn:name="Agent-Skew",type=string,JSONPath=`.status.conditions[?(@.type=="AgentSupported")].reason`
// +kubebuilder:printcolumn:name="Last-Seen",type=date,JSONPath=`.status.agent.lastSeen`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Cluster struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the cluster's identity and per-cluster settings.
	// +optional
	Spec ClusterSpec `json:"spec,omitzero"`

	// status is the observed state of the cluster and its agent.
	// +optional
	Status ClusterStatus `json:"status,omitzero"`
}

// ClusterSpec is the desired state of a Cluster.
type ClusterSpec struct {
	// clientID is the stable identity of the downstream cluster, e.g. the UID
	// of its kube-system namespace. An agent that registers with the same
	// clientID is matched to this Cluster.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClientID string `json:"clientID,omitempty"`

	// paused stops new BundleDeployment content from being rolled out to this
	// cluster. Changes are staged and the cluster's bundles show OutOfSync.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// templateValues is a free-form map available to Helm value templates as
	// .ClusterValues, for per-cluster customization.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	TemplateValues *runtime.RawExtension `json:"templateValues,omitempty"`

	// agentNamespace is the namespace on the downstream cluster where the
	// agent runs.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	AgentNamespace string `json:"agentNamespace,omitempty"`
}

// ClusterStatus is the observed state of a Cluster.
type ClusterStatus struct {
	// namespace is the namespace on the manager that holds this cluster's
	// BundleDeployments.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// agent reports the agent's last check-in.
	// +optional
	Agent AgentStatus `json:"agent,omitzero"`

	// summary counts the cluster's BundleDeployments by state.
	// +optional
	Summary BundleSummary `json:"summary,omitzero"`

	// readyBundles is the number of the cluster's BundleDeployments that are
	// Ready.
	// +optional
	ReadyBundles int32 `json:"readyBundles,omitempty"`

	// desiredReadyBundles is the number of BundleDeployments targeting the
	// cluster.
	// +optional
	DesiredReadyBundles int32 `json:"desiredReadyBundles,omitempty"`

	// display holds human-readable summaries for printer columns and UIs.
	// +optional
	Display ClusterDisplay `json:"display,omitzero"`

	// conditions describe the cluster's current state: Ready, Connected (the
	// agent's liveness), AgentSupported (the agent's version against the
	// manager's), and Reconciling or Stalled while they are True.
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

// AgentStatus is reported by the cluster's agent when it checks in.
type AgentStatus struct {
	// lastSeen is when the agent last checked in.
	// +optional
	LastSeen metav1.Time `json:"lastSeen,omitzero"`

	// version of the agent.
	// +optional
	Version string `json:"version,omitempty"`

	// kubernetesVersion of the downstream cluster, e.g. "v1.37.1".
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// image the agent runs as, as its Deployment tells it; agent upgrades
	// count a cluster as upgraded once its agent reports the new image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
}

// ClusterDisplay holds human-readable status summaries.
type ClusterDisplay struct {
	// readyBundles is "<ready>/<desired>", e.g. "2/3".
	// +optional
	ReadyBundles string `json:"readyBundles,omitempty"`

	// state is the worst state among the cluster's bundles, or WaitCheckIn or
	// Offline when the agent is not connected.
	// +optional
	State string `json:"state,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cluster `json:"items"`
}

// GetConditions returns the cluster's status conditions.
func (in *Cluster) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the cluster's status conditions.
func (in *Cluster) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
