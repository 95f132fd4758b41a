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

// ClusterGroup is a named, reusable selection of Clusters in its namespace.
// Bundles, GitRepos and rollout partitions can target a group by name
// (clusterGroup) or by the group's labels (clusterGroupSelector).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=cg,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Clusters",type=integer,JSONPath=`.status.clusterCount`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.display.readyClusters`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.display.state`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterGroup struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec selects the group's clusters.
	// +optional
	Spec ClusterGroupSpec `json:"spec,omitzero"`

	// status summarizes the group's clusters.
	// +optional
	Status ClusterGroupStatus `json:"status,omitzero"`
}

// ClusterGroupSpec is the desired state of a ClusterGroup.
type ClusterGroupSpec struct {
	// selector selects Clusters in the group's namespace by label. An empty
	// selector ({}) selects every Cluster in the namespace; an absent
	// selector selects none.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// ClusterGroupStatus is the observed state of a ClusterGroup.
type ClusterGroupStatus struct {
	// clusterCount is the number of clusters in the group.
	// +optional
	ClusterCount int32 `json:"clusterCount,omitempty"`

	// nonReadyClusterCount is the number of clusters in the group that are
	// not Ready.
	// +optional
	NonReadyClusterCount int32 `json:"nonReadyClusterCount,omitempty"`

	// nonReadyClusters lists up to 10 clusters of the group that are not
	// Ready.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	NonReadyClusters []string `json:"nonReadyClusters,omitempty"`

	// summary adds up the BundleDeployment summaries of the group's clusters.
	// +optional
	Summary BundleSummary `json:"summary,omitzero"`

	// display holds human-readable summaries for printer columns and UIs.
	// +optional
	Display ClusterGroupDisplay `json:"display,omitzero"`

	// conditions describe the group's current state: Ready, and Reconciling
	// or Stalled while they are True.
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

// ClusterGroupDisplay holds human-readable status summaries.
type ClusterGroupDisplay struct {
	// readyClusters is "<ready>/<total>", e.g. "9/10".
	// +optional
	ReadyClusters string `json:"readyClusters,omitempty"`

	// readyBundles is "<ready>/<desired>" over all BundleDeployments of the
	// group's clusters.
	// +optional
	ReadyBundles string `json:"readyBundles,omitempty"`

	// state is the worst state among the group's clusters.
	// +optional
	State string `json:"state,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterGroupList is a list of ClusterGroups.
type ClusterGroupList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterGroup `json:"items"`
}

// GetConditions returns the cluster group's status conditions.
func (in *ClusterGroup) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the cluster group's status conditions.
func (in *ClusterGroup) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
