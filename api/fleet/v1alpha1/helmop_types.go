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

// DefaultHelmOpPollingInterval is how often a HelmOp whose version is a
// range (or empty: the latest) checks its chart source for a new version.
const DefaultHelmOpPollingInterval = 15 * time.Minute

// HelmOp deploys one Helm chart, from a Helm repository, an OCI registry or
// an archive URL, to many clusters without git: Rancher Fleet's kind of the
// same name (Fleet ≥ 0.12). The manager downloads the chart (under the same
// rules as a GitRepo's charts) into a Bundle named after the HelmOp, which
// the bundle controller rolls out like any other; its status rolls the
// deployments up like a GitRepo's.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=helmops,scope=Namespaced,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Chart",type=string,JSONPath=`.spec.helm.chart`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="BundleDeployments-Ready",type=string,JSONPath=`.status.display.readyBundleDeployments`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.display.state`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type HelmOp struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the chart and where and how it is deployed.
	// +required
	Spec HelmOpSpec `json:"spec,omitzero"`

	// status is the observed state of the chart's deployments.
	// +optional
	Status HelmOpStatus `json:"status,omitzero"`
}

// HelmOpSpec is the desired state of a HelmOp: a Bundle's options (helm
// with chart, repo, version, releaseName, values, valuesFrom…; namespace,
// serviceAccount…), its targets and rollout, and how the chart is fetched.
type HelmOpSpec struct {
	// Options for every target, as a Bundle's; helm.chart is required.
	BundleDeploymentOptions `json:",inline"`

	// paused stages new versions on every cluster without deploying them.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// rolloutStrategy limits how many clusters are updated at once.
	// +optional
	RolloutStrategy *RolloutStrategy `json:"rolloutStrategy,omitempty"`

	// targets select the clusters (the first matching target wins, as a
	// Bundle's). When empty, the chart targets the ClusterGroup named
	// "default".
	// +optional
	// +listType=atomic
	Targets []BundleTarget `json:"targets,omitempty"`

	// dependsOn lists bundles that must be Ready on a cluster first.
	// +optional
	// +listType=atomic
	DependsOn []BundleRef `json:"dependsOn,omitempty"`

	// labels are added to the Bundle (for dependsOn selectors and
	// BundleNamespaceMapping).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// pollingInterval is how often a version range (or the latest version)
	// is resolved again, as a Go duration. Defaults to 15m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	PollingInterval *metav1.Duration `json:"pollingInterval,omitempty"`

	// helmSecretName is a Secret of the HelmOp's namespace for the chart
	// source: username/password (basic auth, sent only to the origin of a
	// Helm repository or chart URL, never to OCI registries), optional
	// cacerts, and insecurePlainHTTP "true" to allow plain HTTP
	// (credentials, and OCI registries).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	HelmSecretName string `json:"helmSecretName,omitempty"`

	// insecureSkipTLSVerify disables TLS verification of the chart source.
	// Do not use in production.
	// +optional
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`
}

// HelmOpStatus is the observed state of a HelmOp.
type HelmOpStatus struct {
	// version is the chart version currently deployed (resolved from
	// spec.helm.version).
	// +optional
	Version string `json:"version,omitempty"`

	// lastPollingTriggered is when the chart source was last checked.
	// +optional
	LastPollingTriggered *metav1.Time `json:"lastPollingTriggered,omitempty"`

	// readyClusters is the number of clusters where the chart is Ready.
	// +optional
	ReadyClusters int32 `json:"readyClusters,omitempty"`

	// desiredReadyClusters is the number of clusters the chart targets.
	// +optional
	DesiredReadyClusters int32 `json:"desiredReadyClusters,omitempty"`

	// summary counts the chart's BundleDeployments by state.
	// +optional
	Summary BundleSummary `json:"summary,omitzero"`

	// display holds human-readable summaries for printer columns and UIs.
	// +optional
	Display GitRepoDisplay `json:"display,omitzero"`

	// conditions: Ready, and Reconciling or Stalled while they are True.
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

// HelmOpList is a list of HelmOps.
//
// +kubebuilder:object:root=true
type HelmOpList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HelmOp `json:"items"`
}

// GetConditions returns the HelmOp's status conditions.
func (in *HelmOp) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the HelmOp's status conditions.
func (in *HelmOp) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
