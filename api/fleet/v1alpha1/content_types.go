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

// Content is one piece of a bundle's manifest in content-addressed storage.
// A manifest (the bundle's files, as JSON, gzip-compressed) is stored once,
// under the name "s-<sha256 of the uncompressed JSON>", no matter how many
// bundles or clusters use it. A manifest whose compressed form is larger than
// one object may hold (etcd's request limit) is split into chunks, each a
// Content named "c-<sha256 of the chunk>", listed in order in chunks.
// Contents are written by `edgefleet apply` and GitRepo sync, read (get, never
// list) by agents, and garbage-collected by the manager when no Bundle
// references them.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.size`
// +kubebuilder:printcolumn:name="Chunks",type=integer,JSONPath=`.chunkCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Content struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// data is gzip-compressed bytes: the whole compressed manifest, or one
	// chunk of it. Empty when chunks is set.
	// +optional
	Data []byte `json:"data,omitempty"`

	// sha256sum is the hex sha256 of the uncompressed manifest (for a
	// manifest) or of data (for a chunk); readers verify it.
	// +required
	SHA256Sum string `json:"sha256sum"`

	// size is the uncompressed size of the manifest in bytes.
	// +optional
	Size int64 `json:"size,omitempty"`

	// chunks names, in order, the Contents whose data concatenated is the
	// compressed manifest.
	// +optional
	// +listType=atomic
	Chunks []string `json:"chunks,omitempty"`

	// chunkCount is len(chunks), for kubectl's columns.
	// +optional
	ChunkCount int32 `json:"chunkCount,omitempty"`
}

// ContentList contains a list of Content.
//
// +kubebuilder:object:root=true
type ContentList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Content `json:"items"`
}
