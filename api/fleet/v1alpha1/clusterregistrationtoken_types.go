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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultClusterRegistrationTokenTTL is the TTL the controller applies to a
// ClusterRegistrationToken whose spec.ttl is unset.
const DefaultClusterRegistrationTokenTTL = 168 * time.Hour

// ClusterRegistrationToken is a shared secret that lets agents register new
// Clusters in its namespace. The controller creates the credentials in the
// Secret named by status.secretName; install the agent with them. The token
// stops working, and is deleted, once it expires.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=crt,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`,priority=10
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expires`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterRegistrationToken struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec configures the token's lifetime.
	// +optional
	Spec ClusterRegistrationTokenSpec `json:"spec,omitzero"`

	// status reports when the token expires and where its credentials are.
	// +optional
	Status ClusterRegistrationTokenStatus `json:"status,omitzero"`
}

// ClusterRegistrationTokenSpec is the desired state of a
// ClusterRegistrationToken.
type ClusterRegistrationTokenSpec struct {
	// ttl is how long the token stays valid after it is created, as a Go
	// duration such as "240h". When unset, the controller applies a default
	// of 168h (one week); tokens never live forever.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// maxClusters is how many Clusters registrations with this token may
	// create; registering beyond it is refused. Re-registrations of
	// existing Clusters do not count. When unset, the default is 100.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	MaxClusters *int32 `json:"maxClusters,omitempty"`

	// clusterGroup is the ClusterGroup that Clusters joining with this token
	// are put in: they get the label group.fleet.edgefleet.io/<group>=true,
	// and the group is created (selecting that label) if it does not exist.
	// When unset, "default": bundles without targets (Fleet's default
	// target, clusterGroup default) reach clusters as soon as they join.
	// "-" puts them in no group.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^(-|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`
	ClusterGroup string `json:"clusterGroup,omitempty"`
}

// DefaultClusterGroup is the group a token puts joining clusters in when
// spec.clusterGroup is unset: the group of Fleet's default target.
const DefaultClusterGroup = "default"

// NoClusterGroup as spec.clusterGroup puts joining clusters in no group.
const NoClusterGroup = "-"

// JoinGroup is the ClusterGroup clusters joining with this token are put
// in, or "" for none.
func (t *ClusterRegistrationToken) JoinGroup() string {
	switch g := t.Spec.ClusterGroup; g {
	case "":
		return DefaultClusterGroup
	case NoClusterGroup:
		return ""
	default:
		return g
	}
}

// DefaultMaxClusters is a ClusterRegistrationToken's maxClusters when unset.
const DefaultMaxClusters = 100

// ClusterRegistrationTokenStatus is the observed state of a
// ClusterRegistrationToken.
type ClusterRegistrationTokenStatus struct {
	// expires is when the token stops being accepted.
	// +optional
	Expires *metav1.Time `json:"expires,omitempty"`

	// secretName is the name of the Secret, in the token's namespace, holding
	// the registration credentials for agents.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`

	// conditions describe the token's current state: Ready (credentials are
	// usable), Expired, and Reconciling or Stalled while they are True.
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

// ClusterRegistrationTokenList is a list of ClusterRegistrationTokens.
type ClusterRegistrationTokenList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterRegistrationToken `json:"items"`
}

// GetConditions returns the token's status conditions.
func (in *ClusterRegistrationToken) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the token's status conditions.
func (in *ClusterRegistrationToken) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
