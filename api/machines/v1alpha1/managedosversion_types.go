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

// LabelChannel names the ManagedOSVersionChannel a ManagedOSVersion was
// synced from.
const LabelChannel = "machines.edgefleet.io/channel"

// ManagedOSVersion is one installable OS version; a ManagedOSImage upgrades
// machines to it by name (spec.managedOSVersionName).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=mosv,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.metadata.upgradeImage`
// +kubebuilder:printcolumn:name="Channel",type=string,JSONPath=`.metadata.labels.machines\.edgefleet\.io/channel`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ManagedOSVersion struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the version and where its image is.
	// +required
	Spec ManagedOSVersionSpec `json:"spec"`
}

// ManagedOSVersionSpec describes an OS version.
type ManagedOSVersionSpec struct {
	// version is the OS version, e.g. v1.2.0.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Version string `json:"version"`

	// type is container (an OS image); Elemental's iso type is not
	// installable by upgrade and is not accepted.
	// +optional
	// +kubebuilder:default=container
	// +kubebuilder:validation:Enum=container
	Type string `json:"type,omitempty"`

	// metadata is where the version's image is.
	// +required
	Metadata ManagedOSVersionMetadata `json:"metadata"`
}

// ManagedOSVersionMetadata is Elemental's version metadata for container
// versions.
type ManagedOSVersionMetadata struct {
	// upgradeImage is the OS image reference.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	UpgradeImage string `json:"upgradeImage"`

	// displayName is a human-readable name.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DisplayName string `json:"displayName,omitempty"`

	// created is when the version was released, as the channel says.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Created string `json:"created,omitempty"`
}

// +kubebuilder:object:root=true

// ManagedOSVersionList is a list of ManagedOSVersions.
type ManagedOSVersionList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ManagedOSVersion `json:"items"`
}

// ManagedOSVersionChannel syncs ManagedOSVersions from a list published at
// a URL or in an OCI image, on an interval.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=mosvc,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Versions",type=integer,JSONPath=`.status.versions`
// +kubebuilder:printcolumn:name="Last-Synced",type=date,JSONPath=`.status.lastSyncedTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ManagedOSVersionChannel struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is where the channel is published.
	// +required
	Spec ManagedOSVersionChannelSpec `json:"spec"`

	// status is the last sync.
	// +optional
	Status ManagedOSVersionChannelStatus `json:"status,omitzero"`
}

// ManagedOSVersionChannelSpec is the desired state of a channel.
// +kubebuilder:validation:XValidation:rule="self.type != 'json' || (has(self.options.uri) && size(self.options.uri) > 0)",message="type json needs options.uri (the https URL of the list)"
// +kubebuilder:validation:XValidation:rule="self.type != 'custom' || (has(self.options.image) && size(self.options.image) > 0)",message="type custom needs options.image (the channel image)"
type ManagedOSVersionChannelSpec struct {
	// type is json (a JSON list of versions at options.uri) or custom
	// (Elemental's channel image: an OCI image holding the JSON list at
	// options.path, read without running the image).
	// +required
	// +kubebuilder:validation:Enum=json;custom
	Type string `json:"type"`

	// options says where the channel is.
	// +required
	Options ChannelOptions `json:"options"`

	// syncInterval is how often the channel is fetched.
	// +optional
	// +kubebuilder:default="1h"
	SyncInterval metav1.Duration `json:"syncInterval,omitzero"`

	// enabled false stops syncing; synced versions stay.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`
}

// ChannelOptions says where a channel is.
type ChannelOptions struct {
	// uri is the https URL of the JSON list (type json). It is fetched
	// under the manager's rules for remote sources (no loopback, link-local
	// or private addresses, https only, unless its administrator allows
	// them).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	URI string `json:"uri,omitempty"`

	// image is the channel image (type custom), e.g.
	// registry.suse.com/rancher/elemental-channel/sl-micro:6.1-baremetal,
	// pulled anonymously under the same rules as uri.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Image string `json:"image,omitempty"`

	// path is the file in the image holding the JSON list (type custom).
	// +optional
	// +kubebuilder:default="/channel.json"
	// +kubebuilder:validation:MaxLength=4096
	Path string `json:"path,omitempty"`

	// timeout bounds one fetch.
	// +optional
	// +kubebuilder:default="1m"
	Timeout metav1.Duration `json:"timeout,omitzero"`
}

// ManagedOSVersionChannelStatus is the observed state of a channel.
type ManagedOSVersionChannelStatus struct {
	// conditions: Ready (the last sync succeeded), Reconciling (syncing)
	// and Stalled (the channel's content is invalid; nothing of it was
	// applied).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastSyncedTime is when the channel was last synced successfully.
	// +optional
	LastSyncedTime *metav1.Time `json:"lastSyncedTime,omitempty"`

	// versions is the number of versions the last successful sync listed.
	// +optional
	Versions int32 `json:"versions,omitempty"`

	// failedSynchronizationAttempts counts failed syncs since the last
	// successful one.
	// +optional
	FailedSynchronizationAttempts int32 `json:"failedSynchronizationAttempts,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// +kubebuilder:object:root=true

// ManagedOSVersionChannelList is a list of ManagedOSVersionChannels.
type ManagedOSVersionChannelList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ManagedOSVersionChannel `json:"items"`
}

// GetConditions returns the status conditions.
func (in *ManagedOSVersionChannel) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *ManagedOSVersionChannel) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
