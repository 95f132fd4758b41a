package clusterproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// ClusterPath is the proxy URL path of a cluster: the namespace and name
// joined by a dot (namespace names cannot contain dots).
func ClusterPath(namespace, name string) string {
	return clusterjoin.ClusterProxyPrefix + namespace + "." + name
}

// parseClusterPath splits "/k8s/clusters/<ns>.<name>/<rest>" into the
// cluster reference and the downstream path.
func parseClusterPath(p string) (ref, rest string, ok bool) {
	tail, ok := strings.CutPrefix(p, clusterjoin.ClusterProxyPrefix)
	if !ok || tail == "" {
		return "", "", false
	}
	ref, rest, _ = strings.Cut(tail, "/")
	return ref, "/" + rest, ref != ""
}

// resolve finds the Cluster: "<namespace>.<name>", or a bare name that is
// unique across namespaces.
func (s *Server) resolve(r *http.Request, ref string) (types.NamespacedName, error) {
	if ns, name, ok := strings.Cut(ref, "."); ok {
		return types.NamespacedName{Namespace: ns, Name: name}, nil
	}
	var list fleetv1.ClusterList
	if err := s.cache.List(r.Context(), &list); err != nil {
		return types.NamespacedName{}, fmt.Errorf("listing clusters: %w", err)
	}
	var found []types.NamespacedName
	for i := range list.Items {
		if list.Items[i].Name == ref {
			found = append(found, client.ObjectKeyFromObject(&list.Items[i]))
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return types.NamespacedName{}, fmt.Errorf("no cluster named %q", ref)
	}
	return types.NamespacedName{}, fmt.Errorf("cluster name %q is used in several namespaces: use <namespace>.%s", ref, ref)
}

// serveProxy forwards a caller's request through the cluster's tunnel. The
// caller authenticates to the manager; the request arrives downstream as
// the agent's impersonate-only account impersonating the caller, so the
// downstream RBAC decides.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	ref, rest, ok := parseClusterPath(r.URL.Path)
	if !ok {
		http.Error(w, "use "+clusterjoin.ClusterProxyPrefix+"<namespace>.<cluster>/...", http.StatusNotFound)
		return
	}
	user, forwardedBy, err := s.caller(r)
	if err != nil {
		status := http.StatusUnauthorized
		if !errors.Is(err, authn.ErrUnauthenticated) {
			status = http.StatusServiceUnavailable
		}
		writeStatus(w, status, err.Error())
		return
	}
	key, err := s.resolve(r, ref)
	if err != nil {
		writeStatus(w, http.StatusNotFound, err.Error())
		return
	}
	if err := s.authorize(r.Context(), user, key); err != nil {
		var f *forbidden
		if errors.As(err, &f) {
			writeStatus(w, http.StatusForbidden, err.Error())
		} else {
			writeStatus(w, http.StatusServiceUnavailable, err.Error())
		}
		return
	}
	e := s.session(key)
	if e == nil {
		// Another replica may hold the tunnel (forward.go).
		s.forward(w, r, key, user, forwardedBy)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = clusterjoin.TunnelAPIServerHost
			pr.Out.Host = clusterjoin.TunnelAPIServerHost
			pr.Out.URL.Path = rest
			pr.Out.URL.RawPath = ""
			if raw := r.URL.RawPath; raw != "" {
				if _, rawRest, ok := parseClusterPath(raw); ok {
					pr.Out.URL.RawPath = rawRest
				}
			}
			setIdentity(pr.Out.Header, user)
		},
		Transport:     e.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, fmt.Sprintf("cluster %s: tunnel error: %v", key, err))
		},
	}
	rp.ServeHTTP(w, r)
}

// setIdentity replaces the caller's credentials with impersonation headers
// for the caller's downstream identity (DownstreamIdentity).
func setIdentity(h http.Header, caller *authn.User) {
	authn.SetImpersonation(h, DownstreamIdentity(caller))
}

// writeStatus answers with a Kubernetes Status, which kubectl prints well.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	reason := map[int]string{401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 502: "InternalError", 503: "ServiceUnavailable"}[code]
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure", "message": msg, "reason": reason, "code": code})
}
