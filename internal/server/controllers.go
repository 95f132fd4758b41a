package server

import (
	"fmt"
	"path/filepath"

	ctrl "sigs.k8s.io/controller-runtime"

	bundlectrl "github.com/edgefleet/edgefleet/internal/controller/bundle"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	clustergroupctrl "github.com/edgefleet/edgefleet/internal/controller/clustergroup"
	contentgcctrl "github.com/edgefleet/edgefleet/internal/controller/contentgc"
	gitrepoctrl "github.com/edgefleet/edgefleet/internal/controller/gitrepo"
)

type reconcilerSetup interface {
	SetupWithManager(ctrl.Manager) error
}

// setupControllers registers every reconciler with the manager. Each
// capability's controller package adds one line here. dataDir holds
// controllers' local caches (git repositories).
func setupControllers(mgr ctrl.Manager, dataDir string, allowLocalGitRepos bool) error {
	for _, c := range []struct {
		name string
		r    reconcilerSetup
	}{
		{"cluster", &clusterctrl.Reconciler{}},
		{"clustergroup", &clustergroupctrl.Reconciler{}},
		{"bundle", &bundlectrl.Reconciler{}},
		{"contentgc", &contentgcctrl.Reconciler{}},
		{"gitrepo", &gitrepoctrl.Reconciler{WorkDir: filepath.Join(dataDir, "git"), AllowLocalRepos: allowLocalGitRepos}},
	} {
		if err := c.r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s controller: %w", c.name, err)
		}
	}
	return nil
}
