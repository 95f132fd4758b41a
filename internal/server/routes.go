package server

import (
	"net/url"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/pki"
)

// routeDeps is what the endpoint's capability routes may use. Routes run on
// every replica (not only the leader); the manager's cache may still be
// syncing when the first request arrives.
type routeDeps struct {
	mgr         ctrl.Manager
	ca          *pki.CA
	externalURL *url.URL
	log         logr.Logger
}

// registerRoutes adds each capability's routes (registration, import
// manifests, tunnel, downloads, webhooks) to the endpoint. Each capability
// package adds one line here.
func registerRoutes(ep *endpoint.Server, d routeDeps) error {
	_ = ep
	_ = d
	return nil
}
