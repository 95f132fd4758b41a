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

// GitRepoRestriction limits what the GitRepos of its namespace may use, and
// sets defaults for them: Rancher Fleet's kind of the same name and fields.
// Every GitRepoRestriction of a namespace applies (their lists are joined;
// the first default, by restriction name, wins). A GitRepo that asks for
// something not allowed is refused (GitRepo condition Stalled, reason
// Restricted) and nothing of it is deployed. It has no spec or status, as
// in Fleet: its fields sit at the top level.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=gitreporestrictions,scope=Namespaced,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Default-ServiceAccount",type=string,JSONPath=`.defaultServiceAccount`
// +kubebuilder:printcolumn:name="Default-ClientSecretName",type=string,JSONPath=`.defaultClientSecretName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GitRepoRestriction struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// defaultServiceAccount is the serviceAccount of GitRepos that set none.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	DefaultServiceAccount string `json:"defaultServiceAccount,omitempty"`

	// allowedServiceAccounts are the only serviceAccount values a GitRepo may
	// set. Empty allows any.
	// +optional
	// +listType=atomic
	AllowedServiceAccounts []string `json:"allowedServiceAccounts,omitempty"`

	// allowedRepoPatterns are regular expressions (unanchored, as in Fleet;
	// write ^…$ to match the whole URL) or exact URLs; a GitRepo's repo must
	// match one. Empty allows any.
	// +optional
	// +listType=atomic
	AllowedRepoPatterns []string `json:"allowedRepoPatterns,omitempty"`

	// defaultClientSecretName is the clientSecretName of GitRepos that set
	// none.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	DefaultClientSecretName string `json:"defaultClientSecretName,omitempty"`

	// allowedClientSecretNames are the only clientSecretName values a GitRepo
	// may set. Empty allows any.
	// +optional
	// +listType=atomic
	AllowedClientSecretNames []string `json:"allowedClientSecretNames,omitempty"`

	// allowedTargetNamespaces are the only targetNamespace values a GitRepo
	// may set; when set, a GitRepo must set one. Empty allows any.
	// +optional
	// +listType=atomic
	AllowedTargetNamespaces []string `json:"allowedTargetNamespaces,omitempty"`
}

// GitRepoRestrictionList is a list of GitRepoRestrictions.
//
// +kubebuilder:object:root=true
type GitRepoRestrictionList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitRepoRestriction `json:"items"`
}
