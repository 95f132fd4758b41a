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

// Labels and annotations edgefleet sets. Everything under the edgefleet.io
// domain is reserved: labels an agent reports for its cluster are dropped if
// they use it, so a cluster cannot claim to be something it is not.
const (
	// ReservedLabelDomain is the suffix of every reserved label prefix.
	ReservedLabelDomain = "edgefleet.io"

	// BundleNameLabel and BundleNamespaceLabel on a BundleDeployment name
	// the Bundle it was made from.
	BundleNameLabel      = "fleet.edgefleet.io/bundle-name"
	BundleNamespaceLabel = "fleet.edgefleet.io/bundle-namespace"

	// ClusterNameLabel and ClusterNamespaceLabel on a BundleDeployment (and
	// on a cluster's own namespace) name the Cluster it belongs to.
	ClusterNameLabel      = "fleet.edgefleet.io/cluster"
	ClusterNamespaceLabel = "fleet.edgefleet.io/cluster-namespace"

	// ManagedLabel marks namespaces edgefleet created (value "true").
	ManagedLabel = "fleet.edgefleet.io/managed"

	// BundleSetLabel groups the Bundles created by one `edgefleet apply NAME`
	// (or one GitRepo), so bundles that vanish from the source are pruned.
	BundleSetLabel = "fleet.edgefleet.io/bundle-set"

	// FleetYAMLWarningsAnnotation on a Bundle lists, one per line, the
	// fleet.yaml keys that were ignored when it was read (file:line: why).
	FleetYAMLWarningsAnnotation = "fleet.edgefleet.io/fleet-yaml-warnings"

	// StrictFleetYAMLAnnotation on a GitRepo, "true", makes an unknown or
	// unsupported fleet.yaml key fail its path (RenderError) instead of
	// being ignored with a warning: `edgefleet apply --strict` for CI.
	StrictFleetYAMLAnnotation = "fleet.edgefleet.io/strict-fleet-yaml"

	// GroupLabelPrefix + <group> ("true") on a Cluster puts it in that
	// ClusterGroup: a token's spec.clusterGroup sets it on the Clusters it
	// creates, and the group it creates selects it.
	GroupLabelPrefix = "group.fleet.edgefleet.io/"

	// HelmOpNameLabel marks the Bundle of a HelmOp (its name).
	HelmOpNameLabel = "fleet.edgefleet.io/helmop-name"

	// RepoNameLabel and CommitLabel mark Bundles from a GitRepo.
	RepoNameLabel = "fleet.edgefleet.io/repo-name"
	CommitLabel   = "fleet.edgefleet.io/commit"

	// BundleDeploymentLabel on a downstream object names the
	// BundleDeployment ("<namespace>/<name>" encoded as
	// "<namespace>.<name>") that applied it; the agent's inventory.
	BundleDeploymentLabel = "fleet.edgefleet.io/bundledeployment"
	// DeploymentIDAnnotation on a downstream object is the deployment ID
	// that last applied it.
	DeploymentIDAnnotation = "fleet.edgefleet.io/deployment-id"

	// ClusterDisplayNameLabel is matched by a target's clusterName too, as
	// Fleet matches management.cattle.io/cluster-display-name.
	ClusterDisplayNameLabel = "fleet.edgefleet.io/cluster-display-name"

	// AgentLabelsAnnotation on a Cluster is a JSON object of the labels its
	// agent set at registration, with the values it set. An agent may set
	// a label that is absent or still has the value it set; any other label
	// is an admin's and is never changed by an agent.
	AgentLabelsAnnotation = "fleet.edgefleet.io/agent-labels"
	// ApproveReregistrationAnnotation ("true") on a Cluster lets the next
	// registration with its clientID take it over without the cluster's
	// current credential (e.g. after the credential expired while the
	// cluster was offline). The manager removes it when used.
	ApproveReregistrationAnnotation = "fleet.edgefleet.io/approve-reregistration"
	// RegistrationTokenAnnotation and RegistrationTokenUIDAnnotation on a
	// Cluster name the ClusterRegistrationToken that created it (counted
	// against the token's maxClusters).
	RegistrationTokenAnnotation    = "fleet.edgefleet.io/registration-token"
	RegistrationTokenUIDAnnotation = "fleet.edgefleet.io/registration-token-uid"
)

// AgentCleanupFinalizer keeps a BundleDeployment until the cluster's agent
// has removed what it deployed downstream. The manager sets it when it
// creates the BundleDeployment (saving every agent a write); the agent
// removes it. When a Cluster is deleted the manager removes it, since an
// unregistered cluster's agent can no longer reach its BundleDeployments.
const AgentCleanupFinalizer = "fleet.edgefleet.io/agent-cleanup"
