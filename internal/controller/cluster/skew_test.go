package cluster

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func TestSetAgentSupported(t *testing.T) {
	for _, tc := range []struct {
		manager, agent string
		status         metav1.ConditionStatus
		reason         string
	}{
		{"v0.7.2", "v0.7.0", metav1.ConditionTrue, fleetv1.AgentCurrentReason},
		{"v0.7.2", "v0.6.1", metav1.ConditionTrue, fleetv1.AgentOutdatedReason},
		{"v0.7.2", "v0.5.1", metav1.ConditionFalse, fleetv1.AgentUnsupportedReason},
		{"v0.7.2", "v0.8.0", metav1.ConditionFalse, fleetv1.AgentUnsupportedReason},
		{"0123abc", "v0.7.0", metav1.ConditionUnknown, fleetv1.AgentVersionUnknownReason},
		{"v0.7.2", "", "", ""},
	} {
		st := &fleetv1.ClusterStatus{Agent: fleetv1.AgentStatus{Version: tc.agent}}
		// A stale condition from an earlier agent must not survive.
		st.Conditions = []metav1.Condition{{Type: fleetv1.AgentSupportedCondition, Status: metav1.ConditionFalse, Reason: "Stale"}}
		setAgentSupported(st, tc.manager, 3)
		c := meta.FindStatusCondition(st.Conditions, fleetv1.AgentSupportedCondition)
		if tc.status == "" {
			if c != nil {
				t.Errorf("agent %q: condition %+v, want none before the agent reports a version", tc.agent, c)
			}
			continue
		}
		if c == nil || c.Status != tc.status || c.Reason != tc.reason || c.Message == "" || c.ObservedGeneration != 3 {
			t.Errorf("manager %s, agent %s: %+v, want %s/%s", tc.manager, tc.agent, c, tc.status, tc.reason)
		}
	}
}
