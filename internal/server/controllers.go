package server

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"

	bundlectrl "github.com/edgefleet/edgefleet/internal/controller/bundle"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	clustergroupctrl "github.com/edgefleet/edgefleet/internal/controller/clustergroup"
	contentgcctrl "github.com/edgefleet/edgefleet/internal/controller/contentgc"
)

type reconcilerSetup interface {
	SetupWithManager(ctrl.Manager) error
}

// setupControllers registers every reconciler with the manager. Each
// capability's controller package adds one line here.
func setupControllers(mgr ctrl.Manager) error {
	for _, c := range []struct {
		name string
		r    reconcilerSetup
	}{
		{"cluster", &clusterctrl.Reconciler{}},
		{"clustergroup", &clustergroupctrl.Reconciler{}},
		{"bundle", &bundlectrl.Reconciler{}},
		{"contentgc", &contentgcctrl.Reconciler{}},
	} {
		if err := c.r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s controller: %w", c.name, err)
		}
	}
	return nil
}
