package cluster

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/version"
)

// setAgentSupported states the version skew contract on the Cluster: the
// manager supports agents of its own minor version and the one before.
// It only informs (condition, column, Event): an outdated or even an
// unsupported agent keeps receiving its bundles, because refusing it would
// strand the cluster exactly when it needs the upgrade bundle.
func setAgentSupported(st *fleetv1.ClusterStatus, managerVersion string, gen int64) {
	if st.Agent.Version == "" {
		meta.RemoveStatusCondition(&st.Conditions, fleetv1.AgentSupportedCondition)
		return
	}
	skew, msg := version.CompareAgent(managerVersion, st.Agent.Version)
	status, reason := metav1.ConditionUnknown, fleetv1.AgentVersionUnknownReason
	switch skew {
	case version.SkewCurrent:
		status, reason = metav1.ConditionTrue, fleetv1.AgentCurrentReason
	case version.SkewOutdated:
		status, reason = metav1.ConditionTrue, fleetv1.AgentOutdatedReason
	case version.SkewUnsupported:
		status, reason = metav1.ConditionFalse, fleetv1.AgentUnsupportedReason
	}
	conditions.Set(&st.Conditions, fleetv1.AgentSupportedCondition, status, reason, msg, gen)
}
