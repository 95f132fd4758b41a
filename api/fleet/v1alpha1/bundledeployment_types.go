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

// BundleDeployment is a Bundle rendered for one cluster. It lives in the
// cluster's namespace on the manager (Cluster status.namespace) and is
// watched by that cluster's agent, which deploys it and reports back. Users
// normally do not create BundleDeployments; the manager manages them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=bd,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Deployed",type=string,JSONPath=`.status.display.deployed`
// +kubebuilder:printcolumn:name="Monitored",type=string,JSONPath=`.status.display.monitored`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.display.state`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BundleDeployment struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the agent should deploy.
	// +optional
	Spec BundleDeploymentSpec `json:"spec,omitzero"`

	// status is reported by the agent.
	// +optional
	Status BundleDeploymentStatus `json:"status,omitzero"`
}

// BundleDeploymentSpec is the desired state of a BundleDeployment.
type BundleDeploymentSpec struct {
	// deploymentID identifies the content and options to deploy:
	// "<manifest ID>:<options hash>". The agent redeploys whenever it differs
	// from status.appliedDeploymentID.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DeploymentID string `json:"deploymentID,omitempty"`

	// stagedDeploymentID is the newest rendered deploymentID. It is promoted
	// to deploymentID when the rollout strategy and paused allow it; until
	// then the deployment shows OutOfSync.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	StagedDeploymentID string `json:"stagedDeploymentID,omitempty"`

	// options are the deployment options in effect for deploymentID.
	// +optional
	Options BundleDeploymentOptions `json:"options,omitzero"`

	// stagedOptions are the deployment options for stagedDeploymentID.
	// +optional
	StagedOptions BundleDeploymentOptions `json:"stagedOptions,omitzero"`

	// paused stops the agent from deploying changes.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// dependsOn lists bundles that must be in an accepted state on this
	// cluster before this deployment proceeds.
	// +optional
	// +listType=atomic
	DependsOn []BundleRef `json:"dependsOn,omitempty"`

	// correctDrift configures drift correction. Changing it does not change
	// deploymentID, so it takes effect without a redeploy.
	// +optional
	CorrectDrift *CorrectDrift `json:"correctDrift,omitempty"`

	// bundleName is the name of the Bundle this deployment was rendered from.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	BundleName string `json:"bundleName,omitempty"`

	// bundleNamespace is the namespace of the Bundle this deployment was
	// rendered from.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	BundleNamespace string `json:"bundleNamespace,omitempty"`
}

// BundleDeploymentStatus is the observed state of a BundleDeployment, as
// reported by the agent.
type BundleDeploymentStatus struct {
	// appliedDeploymentID is the deploymentID the agent last applied.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	AppliedDeploymentID string `json:"appliedDeploymentID,omitempty"`

	// ready is true when every deployed resource is ready.
	// +optional
	Ready bool `json:"ready,omitempty"`

	// nonModified is true when no deployed resource drifted from the desired
	// state.
	// +optional
	NonModified bool `json:"nonModified,omitempty"`

	// nonReadyStatus lists up to 10 resources that are not ready.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	NonReadyStatus []NonReadyStatus `json:"nonReadyStatus,omitempty"`

	// modifiedStatus lists up to 10 resources that drifted from the desired
	// state.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	ModifiedStatus []ModifiedStatus `json:"modifiedStatus,omitempty"`

	// resources lists the resources deployed.
	// +optional
	// +listType=atomic
	Resources []BundleDeploymentResource `json:"resources,omitempty"`

	// release identifies the deployment on the downstream cluster, e.g.
	// "<namespace>/<release name>".
	// +optional
	Release string `json:"release,omitempty"`

	// display holds human-readable summaries for printer columns and UIs.
	// +optional
	Display BundleDeploymentDisplay `json:"display,omitzero"`

	// syncGeneration is the last spec generation for which the agent ran a
	// forced resync.
	// +optional
	SyncGeneration *int64 `json:"syncGeneration,omitempty"`

	// conditions describe the deployment's current state: Ready, Deployed and
	// Monitored, and Reconciling or Stalled while they are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully by the agent.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// BundleDeploymentDisplay holds human-readable status summaries.
type BundleDeploymentDisplay struct {
	// deployed is the status of the Deployed condition, e.g. "True".
	// +optional
	Deployed string `json:"deployed,omitempty"`

	// monitored is the status of the Monitored condition, e.g. "True".
	// +optional
	Monitored string `json:"monitored,omitempty"`

	// state is the deployment's BundleState.
	// +optional
	State string `json:"state,omitempty"`
}

// NonReadyStatus describes a deployed resource that is not ready.
type NonReadyStatus struct {
	// apiVersion of the resource.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// kind of the resource.
	// +optional
	Kind string `json:"kind,omitempty"`

	// namespace of the resource.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// name of the resource.
	// +optional
	Name string `json:"name,omitempty"`

	// summary of the resource's readiness.
	// +optional
	Summary ResourceSummary `json:"summary,omitzero"`
}

// ResourceSummary summarizes the readiness of one resource.
type ResourceSummary struct {
	// state is a short description of the resource's state, e.g.
	// "in-progress" or "failed".
	// +optional
	State string `json:"state,omitempty"`

	// message explains the state.
	// +optional
	Message string `json:"message,omitempty"`

	// error is true when the resource is in an error state.
	// +optional
	Error bool `json:"error,omitempty"`

	// transitioning is true while the resource is moving towards readiness.
	// +optional
	Transitioning bool `json:"transitioning,omitempty"`
}

// ModifiedStatus describes a deployed resource that drifted from the desired
// state.
type ModifiedStatus struct {
	// apiVersion of the resource.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// kind of the resource.
	// +optional
	Kind string `json:"kind,omitempty"`

	// namespace of the resource.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// name of the resource.
	// +optional
	Name string `json:"name,omitempty"`

	// missing is true when the resource should exist but does not.
	// +optional
	Missing bool `json:"missing,omitempty"`

	// delete is true when the resource exists but should not (it is left over
	// from an earlier deployment).
	// +optional
	Delete bool `json:"delete,omitempty"`

	// patch is the JSON merge patch from the live to the desired state.
	// +optional
	Patch string `json:"patch,omitempty"`
}

// BundleDeploymentResource identifies a deployed resource.
type BundleDeploymentResource struct {
	// apiVersion of the resource.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// kind of the resource.
	// +optional
	Kind string `json:"kind,omitempty"`

	// namespace of the resource.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// name of the resource.
	// +optional
	Name string `json:"name,omitempty"`

	// createdAt is when the resource was created.
	// +optional
	CreatedAt metav1.Time `json:"createdAt,omitzero"`
}

// +kubebuilder:object:root=true

// BundleDeploymentList is a list of BundleDeployments.
type BundleDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BundleDeployment `json:"items"`
}

// GetConditions returns the bundle deployment's status conditions.
func (in *BundleDeployment) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the bundle deployment's status conditions.
func (in *BundleDeployment) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
