package server

import (
	"context"
	"net/url"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/gitops/webhook"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/provisioning/releases"
	"github.com/edgefleet/edgefleet/internal/seedimage"
	"github.com/edgefleet/edgefleet/internal/webui"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// routeDeps is what the endpoint's capability routes may use. Routes run on
// every replica (not only the leader); the manager's cache may still be
// syncing when the first request arrives.
type routeDeps struct {
	mgr         ctrl.Manager
	ca          *pki.CA
	externalURL *url.URL
	log         logr.Logger
	// identity names this replica in tunnel Leases (clusterproxy.ReplicaIdentity).
	identity string
	// peers is this replica's peer identity for forwarding between replicas.
	peers *clusterproxy.Peers
	// offlineThreshold and probeInterval tune cluster liveness (0 = default).
	offlineThreshold, probeInterval time.Duration
	// dataDir holds files served by the endpoint (seed images).
	dataDir string
	// seedSources limits where SeedImage base images come from.
	seedSources seedimage.Sources
	// Cluster credential lifetime and join-route rate limit (clusterregistration.Options).
	credentialMaxLifetime time.Duration
	joinRate              float64
	joinBurst             int
	agentImage            string
	// kubernetesVersions are the versions formation may install per distro
	// (nil: any), offered by the UI's Create cluster page.
	kubernetesVersions map[string][]string
}

// registerRoutes adds each capability's routes (registration, import
// manifests, tunnel, downloads, webhooks) to the endpoint. Each capability
// package adds one line here.
func registerRoutes(ep *endpoint.Server, d routeDeps) error {
	ep.Handle("POST "+webhook.Path, &webhook.Handler{Reader: d.mgr.GetAPIReader(), Writer: d.mgr.GetClient(), SystemNamespace: clusterjoin.SystemNamespace, Log: d.log.WithName("webhook")})
	if err := clusterregistration.Setup(d.mgr, ep, clusterregistration.Options{ExternalURL: d.externalURL, CACertPEM: d.ca.CertPEM, Log: d.log,
		CredentialMaxLifetime: d.credentialMaxLifetime, JoinRate: d.joinRate, JoinBurst: d.joinBurst, AgentImage: d.agentImage}); err != nil {
		return err
	}
	if err := machineregistration.Setup(context.Background(), d.mgr, ep, machineregistration.Options{ExternalURL: d.externalURL, CACertPEM: d.ca.CertPEM}); err != nil {
		return err
	}
	if err := seedimage.Setup(context.Background(), d.mgr, ep, seedimage.Options{Dir: filepath.Join(d.dataDir, "seedimages"), ExternalURL: d.externalURL, CACertPEM: d.ca.CertPEM, Sources: d.seedSources}); err != nil {
		return err
	}
	if err := webui.Setup(ep, webui.Options{Config: d.mgr.GetConfig(), Log: d.log.WithName("webui"), SeedImageDir: filepath.Join(d.dataDir, "seedimages"),
		KubernetesVersions: d.kubernetesVersions}); err != nil {
		return err
	}
	_, err := clusterproxy.Setup(d.mgr, ep, clusterproxy.Options{
		ProbeInterval: d.probeInterval, OfflineThreshold: d.offlineThreshold, Identity: d.identity, Peers: d.peers, Log: d.log.WithName("tunnel"),
	})
	return err
}

// uiVersions are the catalog's versions keyed by distro name (nil without
// a catalog: any version goes).
func uiVersions(c *releases.Catalog) map[string][]string {
	vs := c.Versions()
	if vs == nil {
		return nil
	}
	out := map[string][]string{}
	for d, list := range vs {
		out[string(d)] = list
	}
	return out
}
