package server

import (
	"errors"
	"fmt"
	"net/http"

	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/seedimage"
	"github.com/edgefleet/edgefleet/internal/webui"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// streamingPrefixes are the endpoint's long-lived routes (see
// endpoint.Options.StreamingPrefixes).
var streamingPrefixes = []string{
	clusterjoin.TunnelPath, clusterjoin.ClusterProxyPrefix, clusterjoin.ManagerAPIPrefix + "/",
	machineregistration.RegisterPathPrefix, seedimage.DownloadPathPrefix,
	webui.APIPrefix + "/", webui.DownloadPrefix,
}

// metricsAuth lets a caller read /metrics when it authenticates (bearer
// token or client certificate of the manager CA) and the manager's RBAC
// allows it "get" on the non-resource URL /metrics — as for a
// kube-apiserver's own /metrics, e.g. a Prometheus ServiceAccount bound to a
// ClusterRole with nonResourceURLs: ["/metrics"], verbs: ["get"].
func metricsAuth(cfg *rest.Config) (func(*http.Request) (int, string), error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the metrics authorizer: %w", err)
	}
	an := &authn.Authenticator{Client: cs}
	az := &authn.Authorizer{Client: cs}
	return func(r *http.Request) (int, string) {
		u, err := an.Authenticate(r.Context(), r)
		if errors.Is(err, authn.ErrUnauthenticated) {
			return http.StatusUnauthorized, "/metrics needs a bearer token or client certificate allowed get on the non-resource URL /metrics by the manager's RBAC"
		}
		if err != nil {
			return http.StatusServiceUnavailable, err.Error()
		}
		ok, _, err := az.Allowed(r.Context(), u, nil, &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"})
		if err != nil {
			return http.StatusServiceUnavailable, err.Error()
		}
		if !ok {
			return http.StatusForbidden, u.Name + " may not get /metrics: bind it to a ClusterRole with nonResourceURLs [\"/metrics\"], verbs [\"get\"] on the manager"
		}
		return 0, ""
	}, nil
}
