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

// Condition types shared by every kind in this group. Every kind reports
// Ready; Reconciling and Stalled follow the kstatus convention and are present
// only while they are True.
const (
	// ReadyCondition is True when the object has reached its desired state.
	ReadyCondition = "Ready"

	//  ReconcilingCondition is present and True while the controller is
	// working
	// towards the desired state (for example during a rollout).
	ReconcilingCondition = "Reconciling"

	// StalledCondition is present and True when the controller cannot make
	//  progress without a change to the object or its environment (for example
	// an invalid spec).
	StalledCondition = "Stalled"
)

// Kind-specific condition types.
const (
	// ConnectedCondition (Cluster) is True while the cluster's agent has
	//  checked in recently. It is False with reason AgentOffline when the last
	//  heartbeat is too old, and with reason WaitingForCheckIn when the agent
	// has never checked in.
	ConnectedCondition = "Connected"

	// AgentSupportedCondition (Cluster) says whether the manager supports the
	// version the cluster's agent reports: True for its own minor version
	// (AgentCurrent) and the minor before it (AgentOutdated), False for any
	// other (AgentUnsupported), Unknown for development builds. It never
	// stops deployments.
	AgentSupportedCondition = "AgentSupported"

	//  DeployedCondition (BundleDeployment) is True when the agent has applied
	// the current deploymentID.
	DeployedCondition = "Deployed"

	// MonitoredCondition (BundleDeployment) is True when the agent has
	// evaluated the readiness and drift of the deployed resources.
	MonitoredCondition = "Monitored"

	//  FetchedCondition (GitRepo) is True when the repository was fetched and
	// the bundles were rendered for the current commit.
	FetchedCondition = "Fetched"

	//  ExpiredCondition (ClusterRegistrationToken) is True once the token's
	// TTL
	// has passed and it can no longer be used to register clusters.
	ExpiredCondition = "Expired"

	// FleetYAMLWarningsCondition (GitRepo, Bundle) is present and True while a
	// fleet.yaml at the current commit has keys that were ignored (unknown,
	// or not supported yet); the message lists them with file and line.
	FleetYAMLWarningsCondition = "FleetYAMLWarnings"
)

// IgnoredKeysReason: fleet.yaml keys were ignored, as Fleet ignores unknown
// keys (FleetYAMLWarnings).
const IgnoredKeysReason = "IgnoredKeys"

// Generic condition reasons. Reasons are PascalCase and always set.
const (
	// SucceededReason means the last reconcile reached the desired state.
	SucceededReason = "Succeeded"

	// ProgressingReason means work towards the desired state is under way.
	ProgressingReason = "Progressing"

	//  FailedReason means the last reconcile failed; the message has details.
	FailedReason = "Failed"

	// InvalidSpecReason means the spec cannot be acted on as written.
	InvalidSpecReason = "InvalidSpec"

	//  PausedReason means the object is paused and changes are not rolled out.
	PausedReason = "Paused"

	// DependencyNotReadyReason means an object this one depends on is not
	// ready yet.
	DependencyNotReadyReason = "DependencyNotReady"
)

// Cluster condition reasons.
const (
	// AgentConnectedReason: the agent checked in recently.
	AgentConnectedReason = "AgentConnected"

	// AgentCurrentReason: the agent has the manager's minor version.
	AgentCurrentReason = "AgentCurrent"

	// AgentOutdatedReason: the agent is one minor version older than the
	// manager; supported, to be upgraded.
	AgentOutdatedReason = "AgentOutdated"

	// AgentUnsupportedReason: the agent is older than the previous minor
	// version, of another major version, or newer than the manager.
	AgentUnsupportedReason = "AgentUnsupported"

	// AgentVersionUnknownReason: the agent's or the manager's version is not
	// a semantic version (development builds).
	AgentVersionUnknownReason = "AgentVersionUnknown"

	// AgentOfflineReason: the agent's last heartbeat is older than the
	// offline threshold.
	AgentOfflineReason = "AgentOffline"

	//  WaitingForCheckInReason: no agent has checked in for this cluster yet.
	WaitingForCheckInReason = "WaitingForCheckIn"

	//  TunnelDisconnectedReason: the agent heartbeats but its tunnel is down,
	// so the kube-api proxy cannot reach the cluster.
	TunnelDisconnectedReason = "TunnelDisconnected"

	//  BundlesNotReadyReason: one or more BundleDeployments of the cluster are
	// not Ready.
	BundlesNotReadyReason = "BundlesNotReady"
)

// ClusterGroup condition reasons.
const (
	//  ClustersNotReadyReason: one or more clusters of the group are not
	// Ready.
	ClustersNotReadyReason = "ClustersNotReady"

	// NoClustersReason: the selector matches no clusters.
	NoClustersReason = "NoClusters"
)

// Bundle and GitRepo condition reasons.
const (
	//  RolloutInProgressReason: BundleDeployments are being created or updated
	// within the rollout budget.
	RolloutInProgressReason = "RolloutInProgress"

	// TargetsNotReadyReason: one or more targeted clusters are not Ready.
	TargetsNotReadyReason = "TargetsNotReady"

	// NoTargetsReason: the targets match no clusters.
	NoTargetsReason = "NoTargets"
)

// BundleDeployment condition reasons.
const (
	// DeployFailedReason: the agent could not apply the deployment.
	DeployFailedReason = "DeployFailed"
)

// ClusterRegistrationToken condition reasons.
const (
	// TokenExpiredReason: the token's TTL has passed.
	TokenExpiredReason = "TokenExpired"

	// SecretCreatedReason: the registration credentials Secret exists.
	SecretCreatedReason = "SecretCreated"
)

// GitRepo condition reasons (besides the generic ones).
const (
	//  AuthenticationFailedReason: the repository rejected the credentials, or
	// denied access.
	AuthenticationFailedReason = "AuthenticationFailed"

	//  RepositoryUnreachableReason: the repository cannot be reached or does
	// not exist.
	RepositoryUnreachableReason = "RepositoryUnreachable"

	// BranchNotFoundReason: spec.branch does not exist in the repository.
	BranchNotFoundReason = "BranchNotFound"

	//  RevisionNotFoundReason: spec.revision does not exist in the repository.
	RevisionNotFoundReason = "RevisionNotFound"

	//  LocalRepositoryNotAllowedReason: the URL is a local path or file:// URL
	// and the manager does not allow those (server flag --allow-local-git-
	// repos).
	LocalRepositoryNotAllowedReason = "LocalRepositoryNotAllowed"

	// NetworkNotAllowedReason: the repository's address is refused by the
	// manager's network policy for tenant fetches (loopback, link-local,
	// the manager's own addresses; server flag --fetch-allowed-networks),
	// or its git:// protocol cannot be checked against it.
	NetworkNotAllowedReason = "NetworkNotAllowed"

	// CheckoutTooLargeReason: the commit exceeds 1 GiB or 100,000 files.
	CheckoutTooLargeReason = "CheckoutTooLarge"

	//  UnsafeCommitReason: the commit's tree would write outside the checkout
	// or names a path twice, which only a forged tree does.
	UnsafeCommitReason = "UnsafeCommit"

	//  PathNotFoundReason: a spec.paths entry matches no directory at the
	// commit.
	PathNotFoundReason = "PathNotFound"

	//  RenderErrorReason: a fleet.yaml or manifest under spec.paths cannot be
	// read; the message names file and line.
	RenderErrorReason = "RenderError"

	//  WriteFailedReason: the Bundles could not be written (API errors, a
	// bundle name owned by another set).
	WriteFailedReason = "WriteFailed"

	//  SecretNotFoundReason: clientSecretName or helmSecretName names a Secret
	// that does not exist or lacks the expected keys.
	SecretNotFoundReason = "SecretNotFound"
)

// GitRepoRestriction and HelmOp condition reasons.
const (
	// RestrictedReason: a GitRepoRestriction of the namespace does not allow
	// the GitRepo's serviceAccount, repo, clientSecretName or
	// targetNamespace; the message says which and what is allowed.
	RestrictedReason = "Restricted"

	// ChartFetchFailedReason: the HelmOp's chart could not be downloaded or
	// read; the message says why.
	ChartFetchFailedReason = "ChartFetchFailed"
)
