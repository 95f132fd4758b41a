package gitrepo

import (
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// TestCustomizeServiceAccount: the GitRepo's serviceAccount is what every
// bundle deploys as, whatever the repository's fleet.yaml says.
func TestCustomizeServiceAccount(t *testing.T) {
	for _, tt := range []struct {
		name, gitRepo, bundle, target string
		wantBundle, wantTarget        string
	}{
		{name: "unset keeps the fleet.yaml's", bundle: "from-yaml", target: "from-customization", wantBundle: "from-yaml", wantTarget: "from-customization"},
		{name: "set replaces the bundle's", gitRepo: "tenant", bundle: "from-yaml", wantBundle: "tenant"},
		{name: "set clears a customization's", gitRepo: "tenant", target: "cluster-admin-sa", wantBundle: "tenant"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &fleetv1.Bundle{}
			b.Spec.ServiceAccount = tt.bundle
			b.Spec.Targets = []fleetv1.BundleTarget{{Name: "c"}}
			b.Spec.Targets[0].ServiceAccount = tt.target
			gr := &fleetv1.GitRepo{}
			gr.Spec.ServiceAccount = tt.gitRepo
			customize(b, gr)
			if b.Spec.ServiceAccount != tt.wantBundle || b.Spec.Targets[0].ServiceAccount != tt.wantTarget {
				t.Fatalf("bundle %q, target %q; want %q, %q", b.Spec.ServiceAccount, b.Spec.Targets[0].ServiceAccount, tt.wantBundle, tt.wantTarget)
			}
		})
	}
}
