package kubedistro

import (
	"testing"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// The fleet agent's Deployment prefers, and the agent moves itself to,
// the nodes the server labels.
func TestControlPlaneLabelIsTheOneTheAgentPrefers(t *testing.T) {
	if ControlPlaneLabel != clusterjoin.ControlPlaneNodeLabel {
		t.Fatalf("servers are labelled %q, the fleet agent prefers %q", ControlPlaneLabel, clusterjoin.ControlPlaneNodeLabel)
	}
}
