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

// BundleNamespaceMapping lets the Bundles of its namespace that
// bundleSelector selects target Clusters in the namespaces that
// namespaceSelector selects: Rancher Fleet's kind of the same name and
// fields. Without one, a Bundle targets only the Clusters of its own
// namespace. Both selectors must be set; an empty selector ({}) selects
// everything. It has no spec or status, as in Fleet.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=bundlenamespacemappings,scope=Namespaced,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Bundles",type=string,JSONPath=`.bundleSelector`,priority=10
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.namespaceSelector`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BundleNamespaceMapping struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// bundleSelector selects, by label, the Bundles of this namespace the
	// mapping applies to. Unset selects none.
	// +optional
	BundleSelector *metav1.LabelSelector `json:"bundleSelector,omitempty"`

	// namespaceSelector selects, by label, the namespaces whose Clusters
	// those Bundles may target. Unset selects none.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// BundleNamespaceMappingList is a list of BundleNamespaceMappings.
//
// +kubebuilder:object:root=true
type BundleNamespaceMappingList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BundleNamespaceMapping `json:"items"`
}
