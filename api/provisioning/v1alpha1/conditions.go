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

// Labels and names formation puts on other objects.
const (
	// ClusterLabel on a MachineInventory names the ProvisionedCluster that
	// claimed it; on a fleet Cluster, the ProvisionedCluster it was formed as.
	ClusterLabel = "provisioning.edgefleet.io/cluster"
	// PoolLabel on a MachineInventory names the pool that claimed it.
	PoolLabel = "provisioning.edgefleet.io/pool"
	// ClaimedAtAnnotation on a MachineInventory is when it was claimed
	// (RFC 3339): a claim without its ClusterMachine after a grace period
	// is released.
	ClaimedAtAnnotation = "provisioning.edgefleet.io/claimed-at"
	// ControlPlanePool is the control-plane pool's name in labels and status.
	ControlPlanePool = "control-plane"
	// DrainStartedAnnotation on a ClusterMachine is when formation cordoned
	// its node to drain it (RFC 3339); removed when the node is uncordoned.
	DrainStartedAnnotation = "provisioning.edgefleet.io/drain-started"
	// RemediatedAnnotation on a MachineInventory released by health
	// remediation names the cluster and time ("<cluster> <RFC 3339>"): no
	// pool adopts it until someone removes the annotation (the machine was
	// unhealthy; a reset machine comes back as a new inventory without it).
	RemediatedAnnotation = "provisioning.edgefleet.io/remediated"
)

// Condition types. Ready, Reconciling and Stalled as every edgefleet kind.
const (
	ReadyCondition       = "Ready"
	ReconcilingCondition = "Reconciling"
	StalledCondition     = "Stalled"

	// ControlPlaneReadyCondition (ProvisionedCluster): every control-plane
	// machine is bootstrapped and its node Ready.
	ControlPlaneReadyCondition = "ControlPlaneReady"
	// WorkersReadyCondition (ProvisionedCluster): every worker pool has its
	// replicas ready.
	WorkersReadyCondition = "WorkersReady"
	// FleetJoinedCondition (ProvisionedCluster): the cluster's agent
	// registered and is connected.
	FleetJoinedCondition = "FleetJoined"

	// AdoptedCondition (ClusterMachine): the inventory is claimed by this
	// cluster.
	AdoptedCondition = "Adopted"
	// BootstrappedCondition (ClusterMachine): the machine applied its
	// formation plan.
	BootstrappedCondition = "Bootstrapped"
	// NodeReadyCondition (ClusterMachine): the machine's kubelet is healthy.
	NodeReadyCondition = "NodeReady"
	// UpgradedCondition (ClusterMachine): the machine runs the cluster's
	// version.
	UpgradedCondition = "Upgraded"
	// HealthCheckSucceededCondition (ClusterMachine): the pool's
	// healthCheck finds the machine healthy.
	HealthCheckSucceededCondition = "HealthCheckSucceeded"
	// RemediationAllowedCondition (ProvisionedCluster): unhealthy machines
	// may be remediated (False says why not: maxUnhealthy, quorum, the
	// cluster unreachable).
	RemediationAllowedCondition = "RemediationAllowed"
)

// Condition reasons.
const (
	SucceededReason   = "Succeeded"
	ProgressingReason = "Progressing"
	InvalidSpecReason = "InvalidSpec"
	// UnknownVersionReason: spec.version is not one the manager can install.
	UnknownVersionReason = "UnknownVersion"
	// WaitingForMachinesReason: a pool has fewer matching Ready machines
	// than replicas.
	WaitingForMachinesReason = "WaitingForMachines"
	// PausedReason: spec.paused.
	PausedReason = "Paused"
	// WaitingForInitReason: joining machines wait for the init server.
	WaitingForInitReason = "WaitingForInit"
	// WaitingForAddressReason: the init server has reported no address.
	WaitingForAddressReason = "WaitingForAddress"
	// BootstrappingReason: the plan is written, the machine has not applied it.
	BootstrappingReason = "Bootstrapping"
	// BootstrapFailedReason: the machine failed its plan.
	BootstrapFailedReason = "BootstrapFailed"
	// UpgradingReason: a rolling upgrade is under way.
	UpgradingReason = "Upgrading"
	// UpgradeFailedReason: a machine failed its upgrade; the rollout halts.
	UpgradeFailedReason = "UpgradeFailed"
	// PendingUpgradeReason: the machine waits for its turn.
	PendingUpgradeReason = "PendingUpgrade"
	// MachineLostReason: the adopted inventory was deleted.
	MachineLostReason = "MachineLost"
	// KubeletUnhealthyReason: the kubelet probe fails.
	KubeletUnhealthyReason = "KubeletUnhealthy"
	// WaitingForAgentReason: the fleet agent has not registered yet.
	WaitingForAgentReason = "WaitingForAgent"
	// AgentDisconnectedReason: the fleet Cluster exists but is not connected.
	AgentDisconnectedReason = "AgentDisconnected"
	// DrainingReason: the node is cordoned and drained before it is
	// upgraded or removed.
	DrainingReason = "Draining"
	// NodeNotReadyReason: the Node, read through the cluster's tunnel, is
	// missing or not Ready.
	NodeNotReadyReason = "NodeNotReady"
	// ClaimedReason: the inventory is claimed.
	ClaimedReason = "Claimed"
	// LeavingEtcdReason: a server being scaled down runs its release plan,
	// which removes it from the cluster's etcd before it stops.
	LeavingEtcdReason = "LeavingEtcd"
	// LeaveEtcdFailedReason: a server being scaled down failed to leave
	// etcd; it keeps running and stays in the cluster.
	LeaveEtcdFailedReason = "LeaveEtcdFailed"
	// EtcdMemberStaleReason (Event): a dead server was replaced; its etcd
	// member is removed when the next server joins.
	EtcdMemberStaleReason = "EtcdMemberStale"
	// EtcdMemberRemovedReason (Event): a replaced dead server's etcd
	// member was removed by the server that joined after it.
	EtcdMemberRemovedReason = "EtcdMemberRemoved"
	// HealthyReason: the health check finds nothing wrong.
	HealthyReason = "Healthy"
	// UnhealthyNodeReason: a node condition lasted its timeout.
	UnhealthyNodeReason = "UnhealthyNode"
	// NodeStartupTimeoutReason: the node did not appear in time.
	NodeStartupTimeoutReason = "NodeStartupTimeout"
	// NodeAgentSilentReason: the machine's node agent has not reported
	// for longer than nodeAgentSilentTimeout.
	NodeAgentSilentReason = "NodeAgentSilent"
	// MachineFailedReason: the machine failed its bootstrap plan.
	MachineFailedReason = "MachineFailed"
	// RemediatingReason: a remediation is under way.
	RemediatingReason = "Remediating"
	// PowerCycledReason (Event): the machine was power-cycled through its BMC.
	PowerCycledReason = "PowerCycled"
	// RemediatedReason (Event): a remediation ended (healed or replaced).
	RemediatedReason = "Remediated"
	// TooManyUnhealthyReason: more unhealthy machines than maxUnhealthy.
	TooManyUnhealthyReason = "TooManyUnhealthy"
	// ClusterUnreachableReason: the cluster's node conditions cannot be
	// read (fleet Cluster not connected).
	ClusterUnreachableReason = "ClusterUnreachable"
	// ControlPlaneProtectedReason: remediating the machine would remove the
	// last control-plane node or break etcd quorum.
	ControlPlaneProtectedReason = "ControlPlaneProtected"
)
