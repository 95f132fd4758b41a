package server

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	agentupgradectrl "github.com/edgefleet/edgefleet/internal/controller/agentupgrade"
	bmcctrl "github.com/edgefleet/edgefleet/internal/controller/bmc"
	bundlectrl "github.com/edgefleet/edgefleet/internal/controller/bundle"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	clustergroupctrl "github.com/edgefleet/edgefleet/internal/controller/clustergroup"
	crtctrl "github.com/edgefleet/edgefleet/internal/controller/clusterregistrationtoken"
	contentgcctrl "github.com/edgefleet/edgefleet/internal/controller/contentgc"
	gitrepoctrl "github.com/edgefleet/edgefleet/internal/controller/gitrepo"
	helmopctrl "github.com/edgefleet/edgefleet/internal/controller/helmop"
	machineinventoryctrl "github.com/edgefleet/edgefleet/internal/controller/machineinventory"
	machineregctrl "github.com/edgefleet/edgefleet/internal/controller/machineregistration"
	mosictrl "github.com/edgefleet/edgefleet/internal/controller/managedosimage"
	mosvcctrl "github.com/edgefleet/edgefleet/internal/controller/managedosversionchannel"
	provisionedclusterctrl "github.com/edgefleet/edgefleet/internal/controller/provisionedcluster"
	seedimagectrl "github.com/edgefleet/edgefleet/internal/controller/seedimage"
	"github.com/edgefleet/edgefleet/internal/netguard"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
	"github.com/edgefleet/edgefleet/internal/provisioning/releases"
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
	// selfURL is the manager's own endpoint as the manager reaches it.
	selfURL   *url.URL
	caCertPEM []byte
	// agentImage is the fleet agent in import manifests (formed clusters' too).
	agentImage string
	// kubernetesReleases are the versions formation may install.
	kubernetesReleases *releases.Catalog
	// seedSources limits where SeedImage base images come from.
	seedSources seedimage.Sources
	// fetchPolicy limits where tenants' git repositories and Helm charts
	// are fetched from.
	fetchPolicy netguard.Policy
	// offlineThreshold and probeInterval tune cluster liveness (0 = default).
	offlineThreshold, probeInterval time.Duration
	log                             logr.Logger

	// bmcPollInterval and bmcWorkers tune the BMC controller (0 = default).
	bmcPollInterval time.Duration
	bmcWorkers      int

	// agentUpgrades: agent bundles and their waves (off unless Enabled).
	agentUpgrades agentupgradectrl.Settings
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
		{"gitrepo", &gitrepoctrl.Reconciler{WorkDir: filepath.Join(dataDir, "git"), AllowLocalRepos: d.allowLocalGitRepos, Network: &d.fetchPolicy}},
		{"helmop", &helmopctrl.Reconciler{Network: &d.fetchPolicy}},
		{"clusterregistrationtoken", &crtctrl.Reconciler{}},
		{"machineregistration", &machineregctrl.Reconciler{ExternalURL: d.externalURL}},
		{"machineinventory", &machineinventoryctrl.Reconciler{}},
		{"seedimage", &seedimagectrl.Reconciler{Dir: filepath.Join(dataDir, "seedimages"), ExternalURL: d.externalURL, CACertPEM: d.caCertPEM, Sources: d.seedSources}},
		{"managedosimage", &mosictrl.Reconciler{
			// Cordon and drain machines that are nodes of formed clusters, through their tunnels.
			Nodes: &nodeops.Tunnel{Manager: mgr.GetClient(), Endpoint: d.selfURL, CAPEM: d.caCertPEM}}},
		// Channel URLs are tenant input fetched by the manager: same rules as seed base images.
		{"managedosversionchannel", &mosvcctrl.Reconciler{HTTP: d.seedSources.HTTPClient()}},
		{"bmc", &bmcctrl.Reconciler{PollInterval: d.bmcPollInterval, Workers: d.bmcWorkers}},
		{"provisionedcluster", &provisionedclusterctrl.Reconciler{ExternalURL: d.externalURL, CACertPEM: d.caCertPEM, AgentImage: d.agentImage,
			Versions: d.kubernetesReleases.Versions(), Releases: d.kubernetesReleases.Binaries(),
			// Formed clusters' nodes through their tunnels, via this endpoint.
			Nodes: &nodeops.Tunnel{Manager: mgr.GetClient(), Endpoint: d.selfURL, CAPEM: d.caCertPEM}}},
		{"agentupgrade", &agentupgradectrl.Reconciler{Settings: d.agentUpgrades}},
	} {
		if err := c.r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s controller: %w", c.name, err)
		}
	}
	return nil
}

// setupRunnables adds the leader's one-off start-up tasks: this is the one
// list of them (routes' own runnables, which serve state, stay with their
// routes). They write through an uncached client: each touches a handful of
// objects once, not worth a cluster-wide informer.
func setupRunnables(mgr ctrl.Manager, d controllerDeps) error {
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return fmt.Errorf("creating the start-up tasks' client: %w", err)
	}
	for _, task := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"publishing the endpoint ConfigMap", func(ctx context.Context) error {
			return clusterregistration.PublishEndpoint(ctx, direct, d.externalURL, d.caCertPEM)
		}},
		{"revoking legacy cluster rights", func(ctx context.Context) error {
			if err := clusterregistration.RevokeLegacyRights(ctx, direct); err != nil {
				d.log.Error(err, "Revoking rights older versions gave cluster credentials failed; they go at each agent's next renewal")
			}
			return nil
		}},
		{"ensuring the cluster proxy ClusterRole", func(ctx context.Context) error { return clusterproxy.EnsureProxyClusterRole(ctx, direct) }},
	} {
		if err := mgr.Add(manager.RunnableFunc(task.run)); err != nil {
			return fmt.Errorf("adding start-up task %s: %w", task.name, err)
		}
	}
	return nil
}
