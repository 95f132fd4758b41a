package server

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	bundlectrl "github.com/edgefleet/edgefleet/internal/controller/bundle"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	clustergroupctrl "github.com/edgefleet/edgefleet/internal/controller/clustergroup"
	crtctrl "github.com/edgefleet/edgefleet/internal/controller/clusterregistrationtoken"
	contentgcctrl "github.com/edgefleet/edgefleet/internal/controller/contentgc"
	gitrepoctrl "github.com/edgefleet/edgefleet/internal/controller/gitrepo"
	machineinventoryctrl "github.com/edgefleet/edgefleet/internal/controller/machineinventory"
	machineregctrl "github.com/edgefleet/edgefleet/internal/controller/machineregistration"
	seedimagectrl "github.com/edgefleet/edgefleet/internal/controller/seedimage"
	"github.com/edgefleet/edgefleet/internal/seedimage"
)

type reconcilerSetup interface {
	SetupWithManager(ctrl.Manager) error
}

// controllerDeps is what the reconcilers may use.
type controllerDeps struct {
	// dataDir holds controllers' local files (git repositories, seed images).
	dataDir            string
	allowLocalGitRepos bool
	externalURL        *url.URL
	caCertPEM          []byte
	// seedSources limits where SeedImage base images come from.
	seedSources seedimage.Sources
	// offlineThreshold and probeInterval tune cluster liveness (0 = default).
	offlineThreshold, probeInterval time.Duration
}

// setupControllers registers every reconciler with the manager: this is the
// one list of them. Each controller package under internal/controller adds
// one line here.
func setupControllers(mgr ctrl.Manager, d controllerDeps) error {
	dataDir := d.dataDir
	for _, c := range []struct {
		name string
		r    reconcilerSetup
	}{
		{"cluster", &clusterctrl.Reconciler{ProbeInterval: d.probeInterval, OfflineThreshold: d.offlineThreshold}},
		{"clustergroup", &clustergroupctrl.Reconciler{}},
		{"bundle", &bundlectrl.Reconciler{}},
		{"contentgc", &contentgcctrl.Reconciler{}},
		{"gitrepo", &gitrepoctrl.Reconciler{WorkDir: filepath.Join(dataDir, "git"), AllowLocalRepos: d.allowLocalGitRepos}},
		{"clusterregistrationtoken", &crtctrl.Reconciler{}},
		{"machineregistration", &machineregctrl.Reconciler{ExternalURL: d.externalURL}},
		{"machineinventory", &machineinventoryctrl.Reconciler{}},
		{"seedimage", &seedimagectrl.Reconciler{Dir: filepath.Join(dataDir, "seedimages"), ExternalURL: d.externalURL, CACertPEM: d.caCertPEM, Sources: d.seedSources}},
	} {
		if err := c.r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s controller: %w", c.name, err)
		}
	}
	return nil
}
