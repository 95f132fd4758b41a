// Package clusterjoin is the wire contract between an agent that joins the fleet
// and the manager's endpoint: routes, request and response bodies, and the
// names of the objects both sides create. The manager (internal/clusterregistration,
// internal/clusterproxy) and the agent (internal/agent/join) import it; it
// imports nothing of either.
package clusterjoin

import (
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
)

// Routes on the manager's endpoint.
const (
	// RegisterPath exchanges a registration token for a per-cluster
	// credential (POST, RegisterRequest → RegisterResponse).
	RegisterPath = "/v1/register"
	// RenewPath exchanges a still-valid cluster credential (Authorization:
	// Bearer) for a fresh one (POST → RegisterResponse); with an expired
	// credential, the RenewRequest body's renewal key is checked instead.
	RenewPath = "/v1/renew"
	// ImportPathPrefix + "<token>.yaml" serves the import manifest.
	ImportPathPrefix = "/v1/import/"
	// TunnelPath is the agent's websocket (GET with Upgrade, Authorization:
	// Bearer <cluster credential>).
	TunnelPath = "/v1/tunnel"
	// ManagerAPIPrefix proxies the manager's Kubernetes API for agents: an
	// agent's manager kubeconfig points at <endpoint>/k8s/manager.
	ManagerAPIPrefix = "/k8s/manager"
	// ClusterProxyPrefix + "<namespace>.<name>/..." reaches a downstream
	// cluster's Kubernetes API through its tunnel.
	ClusterProxyPrefix = "/k8s/clusters/"
)

// TunnelAPIServerHost is the only host an agent serves on a tunnel stream:
// requests for anything else are refused.
const TunnelAPIServerHost = "kube-apiserver"

// SystemNamespace holds edgefleet's own objects, on the manager (its CA,
// leader-election Leases, EndpointConfigMap) as on each downstream cluster
// (the agent, its credential, its inventories).
const SystemNamespace = "edgefleet-system"

// Downstream objects (in SystemNamespace on the downstream cluster).
const (
	// AgentServiceAccount runs the agent; it may apply anything (bundles).
	AgentServiceAccount = "edgefleet-agent"
	// ImpersonatorServiceAccount may only impersonate; the agent sends the
	// manager's proxied requests with its token, so downstream RBAC decides
	// with the caller's identity.
	ImpersonatorServiceAccount = "edgefleet-impersonator"
	// BootstrapSecret holds the join settings from the import manifest.
	BootstrapSecret = "edgefleet-agent-bootstrap"
	// CredentialSecret holds the per-cluster credential after registration,
	// so an agent restart does not register again.
	CredentialSecret = "edgefleet-agent"
)

// Keys of BootstrapSecret.
const (
	KeyServer     = "server"
	KeyToken      = "token"
	KeyCAChecksum = "caChecksum"
)

// Manager-side names.
const (
	// ClusterServiceAccount is the ServiceAccount in each cluster's
	// namespace whose tokens are the cluster's credential.
	ClusterServiceAccount = "edgefleet-agent"
	// EndpointConfigMap (in SystemNamespace on the manager) publishes the
	// endpoint URL and CA for the CLI.
	EndpointConfigMap = "edgefleet-endpoint"
)

// The agent's heartbeat: a coordination.k8s.io Lease in the cluster's
// namespace on the manager, like a node's heartbeat. The manager creates it;
// the agent may only update it (renewTime and the annotations below). The
// agent has no right on its Cluster's status: the manager copies what it
// finds here into status.agent, bounded and validated.
const (
	HeartbeatLease = "edgefleet-agent"
	// AnnotationAgentVersion and AnnotationKubernetesVersion on
	// HeartbeatLease carry the agent's facts.
	AnnotationAgentVersion      = "fleet.edgefleet.io/agent-version"
	AnnotationKubernetesVersion = "fleet.edgefleet.io/kubernetes-version"
	// AnnotationAgentImage carries the image the agent runs as, from
	// $EDGEFLEET_AGENT_IMAGE, which the agent's Deployment sets to its own
	// image: an agent upgrade counts as checked in once it appears here.
	AnnotationAgentImage = "fleet.edgefleet.io/agent-image"
)

// AgentDeployment is the agent's Deployment downstream, in SystemNamespace.
const AgentDeployment = "edgefleet-agent"

// EnvHealthProbeAddress sets the agent's --health-probe-address in its
// Deployment: a variable, not a flag, so an agent image older than the flag
// ignores it instead of refusing to start, and the same Deployment can roll
// back to it.
const EnvHealthProbeAddress = "EDGEFLEET_HEALTH_PROBE_ADDRESS"

// EnvAgentImage names the agent's own image inside its Deployment.
const EnvAgentImage = "EDGEFLEET_AGENT_IMAGE"

// EnvPodName and EnvPodNamespace name the agent's own Pod (the downward
// API sets them in its Deployment): the agent moves itself to a
// control-plane node when it was scheduled elsewhere.
const (
	EnvPodName      = "EDGEFLEET_POD_NAME"
	EnvPodNamespace = "EDGEFLEET_POD_NAMESPACE"
)

// ControlPlaneNodeLabel marks control-plane nodes (kubeadm, k3s, RKE2 and
// edgefleet's distro set it): the agent's Deployment prefers them.
const ControlPlaneNodeLabel = "node-role.kubernetes.io/control-plane"

// AnnotationAgentMovedAt on the agent's ReplicaSet is when an agent of it
// last deleted its own Pod to move to a control-plane node: a new Pod of
// the same ReplicaSet waits MoveCooldown from then before moving again, so
// a scheduler that keeps choosing a worker cannot make the agent loop.
const AnnotationAgentMovedAt = "fleet.edgefleet.io/agent-moved-at"

// RegisterRequest is the body of POST /v1/register.
type RegisterRequest struct {
	// Token is the ClusterRegistrationToken's secret value.
	Token string `json:"token"`
	// ClientID identifies the downstream cluster across re-registrations:
	// the UID of its kube-system namespace.
	ClientID string `json:"clientID"`
	// Labels are proposed for the Cluster; reserved *edgefleet.io keys are
	// dropped.
	Labels map[string]string `json:"labels,omitempty"`
	// RenewalKey of the cluster's current registration, if the agent has
	// one: proof that it is that cluster, like its credential, also once
	// the credential can no longer be renewed.
	RenewalKey string `json:"renewalKey,omitempty"`
}

// RegisterResponse is the credential the manager issues.
type RegisterResponse struct {
	// ClusterName and ClusterNamespace name the Cluster object.
	ClusterName      string `json:"clusterName"`
	ClusterNamespace string `json:"clusterNamespace"`
	// Namespace holds the cluster's BundleDeployments (status.namespace).
	Namespace string `json:"namespace"`
	// Token is a bearer token for the manager API proxy and the tunnel.
	Token string `json:"token"`
	// Expires is when Token stops working; renew before.
	Expires time.Time `json:"expires"`
	// ManagerAPIPath is appended to the endpoint URL to form the manager
	// kubeconfig's server.
	ManagerAPIPath string `json:"managerAPIPath"`
	// CACert is the endpoint's CA (PEM), the one the agent pinned.
	CACert string `json:"caCert"`
	// RenewalKey, issued with a registration only (renewals leave it
	// empty: the agent keeps the one it has), renews the credential after
	// Token expired, e.g. at a site that was dark for longer than the
	// credential's life, until the registration's maximum lifetime ends or
	// the cluster's credentials are revoked. Secret like Token.
	RenewalKey string `json:"renewalKey,omitempty"`
}

// RenewRequest is the body of POST /v1/renew. It is read only when the
// bearer credential is no longer valid: the renewal key of the cluster's
// registration then stands in for it.
type RenewRequest struct {
	ClusterNamespace string `json:"clusterNamespace"`
	ClusterName      string `json:"clusterName"`
	RenewalKey       string `json:"renewalKey"`
}

// Error is the JSON body of every non-2xx answer.
type Error struct {
	Message string `json:"message"`
}

// ImpersonatorRules are the only rights of ImpersonatorServiceAccount:
// impersonating users, groups, service accounts, UIDs and user extras (RBAC
// has no "userextras/*" wildcard, and extra keys such as
// authentication.kubernetes.io/credential-id are open-ended, hence "*" in
// authentication.k8s.io — for the impersonate verb only).
var ImpersonatorRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"users", "groups", "serviceaccounts"}, Verbs: []string{"impersonate"}},
	{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"impersonate"}},
}

// ManagerAdminsGroup is the downstream group of the manager's admins
// (system:masters on the manager) in kube-api proxy requests; the agent binds
// it to cluster-admin with ClusterRoleBinding ManagerAdminsBinding. The
// manager never sends system:masters downstream.
const (
	ManagerAdminsGroup   = "edgefleet:manager-admins"
	ManagerAdminsBinding = "edgefleet-manager-admins"
)
