package provisionedcluster

import (
	"strings"
	"testing"

	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

// A failing machine's HealthCheckSucceeded names the check that fails.
func TestFailingCondition(t *testing.T) {
	for _, tc := range []struct {
		why, reason string
	}{
		{"kubelet heartbeat silent 34s", provisioningv1.UnhealthyNodeReason},
		{"Ready Unknown 3s of 5m0s", provisioningv1.UnhealthyNodeReason},
		{"node agent silent 2m5s of 10m0s", provisioningv1.NodeAgentSilentReason},
		{"kubelet heartbeat silent 34s, node agent silent 2m5s of 10m0s", provisioningv1.UnhealthyNodeReason},
	} {
		reason, msg := failingCondition(verdict{failing: true, why: tc.why})
		if reason != tc.reason || !strings.Contains(msg, tc.why) || !strings.HasPrefix(msg, "failing, not unhealthy yet") {
			t.Errorf("failingCondition(%q) = %s %q, want %s and a message naming it", tc.why, reason, msg, tc.reason)
		}
	}
}
