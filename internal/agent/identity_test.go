package agent

import (
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func TestServiceAccountUser(t *testing.T) {
	for _, tt := range []struct{ sa, want string }{
		{"", ""},
		{"-", ""}, // cleared by a target customization
		{"deployer", "system:serviceaccount:edgefleet-system:deployer"},
	} {
		if got := serviceAccountUser(fleetv1.BundleDeploymentOptions{ServiceAccount: tt.sa}); got != tt.want {
			t.Errorf("serviceAccount %q: user %q, want %q", tt.sa, got, tt.want)
		}
	}
}
