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

// SeedImageType is the kind of media a SeedImage builds.
// +kubebuilder:validation:Enum=iso;raw
type SeedImageType string

const (
	// SeedImageISO builds a bootable ISO that installs the OS. The default.
	SeedImageISO SeedImageType = "iso"
	// SeedImageRaw builds a pre-installed raw disk image that registers on
	// first boot.
	SeedImageRaw SeedImageType = "raw"
)

// SeedImageState is the build state of a SeedImage.
// +kubebuilder:validation:Enum=Pending;Building;Ready;Failed;Expired
type SeedImageState string

const (
	// SeedImagePending: the build has not started.
	SeedImagePending SeedImageState = "Pending"
	// SeedImageBuilding: the image is being built.
	SeedImageBuilding SeedImageState = "Building"
	// SeedImageReady: the image can be downloaded from status.downloadURL.
	SeedImageReady SeedImageState = "Ready"
	// SeedImageFailed: the build failed; see the Ready condition.
	SeedImageFailed SeedImageState = "Failed"
	// SeedImageExpired: the image was removed after cleanupAfterMinutes.
	SeedImageExpired SeedImageState = "Expired"
)

// DefaultSeedImageCleanupAfterMinutes is how long a built image stays
// downloadable when spec.cleanupAfterMinutes is unset.
const DefaultSeedImageCleanupAfterMinutes = 60

// SeedImage builds installation media for a MachineRegistration: a base OS
// image with the registration URL (and optional cloud-config) baked in. Boot
// machines from it to register them. The image is served at
// status.downloadURL until it expires.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=si,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="OS Image",type=string,JSONPath=`.spec.osImage`,priority=10
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.downloadURL`,priority=10
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SeedImage struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the image to build.
	// +required
	Spec SeedImageSpec `json:"spec,omitzero"`

	// status reports the build and where to download the image.
	// +optional
	Status SeedImageStatus `json:"status,omitzero"`
}

// SeedImageSpec is the desired state of a SeedImage.
// +kubebuilder:validation:XValidation:rule="!has(self.baseImage) || !(self.baseImage.startsWith('http://') || self.baseImage.startsWith('https://')) || has(self.baseImageSHA256)",message="baseImageSHA256 is required when baseImage is an http(s) URL: set it to the image's published SHA-256"
// +kubebuilder:validation:XValidation:rule="!has(self.osImage) || !has(self.baseImage)",message="osImage and baseImage are exclusive: set osImage to boot an edgefleet OS image, or baseImage to add the registration to an existing ISO or disk image"
// +kubebuilder:validation:XValidation:rule="!has(self.osImage) || !has(self.baseImageSHA256)",message="baseImageSHA256 checks a baseImage file: pin an osImage by digest instead (registry/repository@sha256:<digest>)"
type SeedImageSpec struct {
	// registrationRef references the MachineRegistration whose URL and
	// credentials are baked into the image. It must be in the SeedImage's
	// namespace: namespace may be left empty or set to the SeedImage's own;
	// any other namespace fails the build (namespaces are tenants).
	// +required
	RegistrationRef ObjectReference `json:"registrationRef,omitzero"`

	// type of media to build: iso (the default) or raw.
	// +optional
	Type SeedImageType `json:"type,omitempty"`

	// baseImage is the image to start from: for iso, an ISO, for raw, a GPT
	// disk image with the OS. One of: an https URL (with baseImageSHA256), an
	// OCI image holding one such file (oci://registry/repository:tag), or the
	// name of a file in the directory the manager's administrator configured
	// with --seed-base-image-dir (an absolute path inside it is accepted too).
	// Empty builds config-only media. URLs and registries on loopback,
	// link-local or private addresses are refused unless the manager allows
	// them (docs/machines.md).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	BaseImage string `json:"baseImage,omitempty"`

	// osImage is an edgefleet OS image (docs/os.md) to build bootable media
	// from: an OCI reference, registry/repository:tag or
	// registry/repository@sha256:<digest> (oci:// accepted). The media boot
	// the image's kernel and initrd into a live system that runs
	// edgefleet-node with the registration baked in: an ISO that boots BIOS
	// and UEFI, or (type raw) a GPT disk image that boots UEFI
	// (docs/os/seed-media.md). The digest pulled is reported in
	// status.osImageDigest. Registries are reached under the same rules as
	// baseImage. Exclusive with baseImage.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	OSImage string `json:"osImage,omitempty"`

	// baseImageSHA256 is the expected SHA-256 (hex) of the base image file.
	// Required when baseImage is an http(s) URL; checked, when set, for a
	// file in the manager's base image directory and the file pulled from
	// an OCI image. The build fails on a mismatch and keeps nothing.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	BaseImageSHA256 string `json:"baseImageSHA256,omitempty"`

	// cloud-config is applied by the live system booted from the image
	// (before registration), in cloud-init or yip syntax.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	CloudConfig *runtime.RawExtension `json:"cloud-config,omitempty"`

	// cleanupAfterMinutes is how long the built image stays downloadable.
	// Defaults to 60; 0 keeps it until the SeedImage is deleted.
	// +optional
	// +kubebuilder:validation:Minimum=0
	CleanupAfterMinutes *int32 `json:"cleanupAfterMinutes,omitempty"`

	// retriggerBuild, when set to true on an expired or failed image, builds
	// it again.
	// +optional
	RetriggerBuild bool `json:"retriggerBuild,omitempty"`
}

// SeedImageStatus is the observed state of a SeedImage.
type SeedImageStatus struct {
	// state of the build: Pending, Building, Ready, Failed or Expired.
	// +optional
	State SeedImageState `json:"state,omitempty"`

	// downloadURL is where the built image can be downloaded while state is
	// Ready.
	// +optional
	DownloadURL string `json:"downloadURL,omitempty"`

	// checksum is the SHA-256 checksum of the built image, hex-encoded.
	// +optional
	Checksum string `json:"checksum,omitempty"`

	// checksumURL is where the image's SHA-256 checksum file can be
	// downloaded.
	// +optional
	ChecksumURL string `json:"checksumURL,omitempty"`

	// osImageDigest is the digest of the OS image (spec.osImage) the media
	// were built from.
	// +optional
	OSImageDigest string `json:"osImageDigest,omitempty"`

	// expiresAt is when the built image will be removed.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// conditions describe the image's current state: Ready, and Reconciling
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

// +kubebuilder:object:root=true

// SeedImageList is a list of SeedImages.
type SeedImageList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SeedImage `json:"items"`
}

// GetConditions returns the seed image's status conditions.
func (in *SeedImage) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the seed image's status conditions.
func (in *SeedImage) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
