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

// DefaultGitRepoPollingInterval is the polling interval the controller uses
// when spec.pollingInterval is unset.
const DefaultGitRepoPollingInterval = 15 * time.Second

// GitRepoStateGitUpdating is the display state while a new commit is being
// fetched and rendered.
const GitRepoStateGitUpdating = "GitUpdating"

// GitRepo watches a git repository and turns the directories under its paths
// into Bundles, targeted at the clusters selected by its targets. It is
// compatible with Rancher Fleet's GitRepo.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=gitrepos,scope=Namespaced,shortName=gr,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Repo",type=string,JSONPath=`.spec.repo`
// +kubebuilder:printcolumn:name="Commit",type=string,JSONPath=`.status.commit`
// +kubebuilder:printcolumn:name="BundleDeployments-Ready",type=string,JSONPath=`.status.display.readyBundleDeployments`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.display.state`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GitRepo struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the repository to watch and where to deploy its content.
	// +required
	Spec GitRepoSpec `json:"spec,omitzero"`

	// status is the observed state of the repository and its deployments.
	// +optional
	Status GitRepoStatus `json:"status,omitzero"`
}

// GitRepoSpec is the desired state of a GitRepo.
type GitRepoSpec struct {
	// repo is the URL of the git repository, e.g.
	// "https://github.com/example/fleet-examples" or
	// "git@github.com:example/fleet-examples.git".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Repo string `json:"repo,omitempty"`

	// branch to follow. Defaults to "master" when neither branch nor revision
	// is set. Ignored when revision is set.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Branch string `json:"branch,omitempty"`

	// revision is a fixed commit or tag to deploy. It takes precedence over
	// branch.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Revision string `json:"revision,omitempty"`

	// paths are directories (globs allowed) in the repository to scan for
	// bundles. Each directory holding a fleet.yaml, and the root of each path,
	// becomes a Bundle. Defaults to the repository root.
	// +optional
	// +listType=atomic
	Paths []string `json:"paths,omitempty"`

	// targets select the clusters the repository's bundles are deployed to.
	// For each cluster the first matching target wins. When empty, the
	// bundles target the ClusterGroup named "default".
	// +optional
	// +listType=atomic
	Targets []GitTarget `json:"targets,omitempty"`

	// targetNamespace forces every resource of the repository's bundles into
	// this namespace; bundles with cluster-scoped resources fail to deploy.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	TargetNamespace string `json:"targetNamespace,omitempty"`

	// pollingInterval is how often the repository is checked for new commits,
	// as a Go duration. Defaults to 15s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	PollingInterval *metav1.Duration `json:"pollingInterval,omitempty"`

	// disablePolling turns polling off; new commits are then picked up only
	// through the webhook.
	// +optional
	DisablePolling bool `json:"disablePolling,omitempty"`

	// paused stops new commits from being rolled out: bundles are updated but
	// their deployments are staged and show OutOfSync.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// suspend stops reconciling the GitRepo: the repository is neither polled
	// nor fetched, its Bundles are left as they are and its status is not
	// updated; deleting it still deletes its Bundles. Resuming syncs at once.
	// Unlike paused, which keeps syncing but holds back the rollout.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// keepResources leaves deployed resources in place when the GitRepo or one
	// of its bundles is deleted.
	// +optional
	KeepResources bool `json:"keepResources,omitempty"`

	// serviceAccount is the downstream ServiceAccount (in the agent's
	// namespace, edgefleet-system) every bundle of this GitRepo deploys as.
	// When set it replaces the serviceAccount of the repository's fleet.yaml
	// files and of their target customizations, so committers cannot choose
	// another identity. See the Bundle's serviceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccount string `json:"serviceAccount,omitempty"`

	// forceSyncGeneration forces a redeploy of every bundle whenever it is
	// changed, e.g. incremented.
	// +optional
	ForceSyncGeneration int64 `json:"forceSyncGeneration,omitempty"`

	// clientSecretName is the name of a Secret in the GitRepo's namespace with
	// credentials for the repository: type kubernetes.io/basic-auth
	// (username/password) or kubernetes.io/ssh-auth (ssh-privatekey, optional
	// known_hosts).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClientSecretName string `json:"clientSecretName,omitempty"`

	// helmSecretName is the name of a Secret in the GitRepo's namespace with
	// credentials for the Helm repositories the bundles use.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	HelmSecretName string `json:"helmSecretName,omitempty"`

	// caBundle is a PEM bundle of CA certificates trusted when connecting to
	// the git and Helm repositories over TLS.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// insecureSkipTLSVerify disables TLS certificate verification for the git
	// and Helm repositories. Do not use in production.
	// +optional
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`

	// webhookSecret is the name of a Secret in the GitRepo's namespace holding
	// the shared secret used to verify webhook payloads from the git host.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	WebhookSecret string `json:"webhookSecret,omitempty"`

	// correctDrift configures drift correction for every bundle of the
	// repository.
	// +optional
	CorrectDrift *CorrectDrift `json:"correctDrift,omitempty"`
}

// GitTarget selects clusters for a GitRepo's bundles. All criteria set in one
// target must match. A target with no criteria matches nothing, while an
// empty clusterSelector ({}) matches every cluster.
type GitTarget struct {
	// name of the target.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// clusterName selects a single Cluster by name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterName string `json:"clusterName,omitempty"`

	// clusterSelector selects Clusters by label.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// clusterGroup selects the Clusters of the named ClusterGroup.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterGroup string `json:"clusterGroup,omitempty"`

	// clusterGroupSelector selects the Clusters of every ClusterGroup whose
	// labels match.
	// +optional
	ClusterGroupSelector *metav1.LabelSelector `json:"clusterGroupSelector,omitempty"`
}

// GitRepoStatus is the observed state of a GitRepo.
type GitRepoStatus struct {
	// commit is the commit currently rendered into bundles.
	// +optional
	Commit string `json:"commit,omitempty"`

	// webhookCommit is the latest commit announced by a webhook call.
	// +optional
	WebhookCommit string `json:"webhookCommit,omitempty"`

	// lastPollingTriggered is when the repository was last polled.
	// +optional
	LastPollingTriggered *metav1.Time `json:"lastPollingTriggered,omitempty"`

	// readyClusters is the number of clusters where every bundle of the
	// repository is Ready.
	// +optional
	ReadyClusters int32 `json:"readyClusters,omitempty"`

	// desiredReadyClusters is the number of clusters that have at least one
	// of the repository's bundles.
	// +optional
	DesiredReadyClusters int32 `json:"desiredReadyClusters,omitempty"`

	// summary counts the repository's BundleDeployments by state.
	// +optional
	Summary BundleSummary `json:"summary,omitzero"`

	// display holds human-readable summaries for printer columns and UIs.
	// +optional
	Display GitRepoDisplay `json:"display,omitzero"`

	// conditions describe the repository's current state: Ready, Fetched, and
	// Reconciling or Stalled while they are True.
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

// GitRepoDisplay holds human-readable status summaries.
type GitRepoDisplay struct {
	// readyBundleDeployments is "<ready>/<desired>" over the repository's
	// BundleDeployments, e.g. "4/5".
	// +optional
	ReadyBundleDeployments string `json:"readyBundleDeployments,omitempty"`

	// state is the worst state among the repository's BundleDeployments, or
	// GitUpdating while a new commit is being processed.
	// +optional
	State string `json:"state,omitempty"`

	// message is a short human-readable description of the state.
	// +optional
	Message string `json:"message,omitempty"`

	// error is true when the state is an error.
	// +optional
	Error bool `json:"error,omitempty"`
}

// +kubebuilder:object:root=true

// GitRepoList is a list of GitRepos.
type GitRepoList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitRepo `json:"items"`
}

// GetConditions returns the git repo's status conditions.
func (in *GitRepo) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the git repo's status conditions.
func (in *GitRepo) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
