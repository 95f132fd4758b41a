package clusterregistration

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// ManagerAPIProxy forwards <endpoint>/k8s/manager/... to the manager's
// kube-apiserver, so an agent needs outbound HTTPS to the endpoint only. It
// forwards only requests with a bearer token, which the kube-apiserver
// authenticates and authorizes itself; the proxy adds no credential of its
// own and drops impersonation headers.
func ManagerAPIProxy(cfg *rest.Config) (http.Handler, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("parsing manager API address %q: %w", cfg.Host, err)
	}
	// Only the CA: never the manager's own client certificate or token.
	rt, err := rest.TransportFor(&rest.Config{Host: cfg.Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: cfg.CAData, CAFile: cfg.CAFile, ServerName: cfg.ServerName, Insecure: cfg.Insecure,
	}})
	if err != nil {
		return nil, fmt.Errorf("building manager API transport: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					delete(pr.Out.Header, k)
				}
			}
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, http.StatusBadGateway, "manager API unreachable: %v", err)
		},
	}
	inner := http.StripPrefix(clusterjoin.ManagerAPIPrefix, rp)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authn.BearerToken(r) == "" {
			writeError(w, http.StatusUnauthorized, "the manager API proxy needs Authorization: Bearer <cluster credential>")
			return
		}
		if err := endpoint.BufferBody(w, r, maxAgentRequestBody); err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "%v", err)
			return
		}
		inner.ServeHTTP(w, r)
	}), nil
}

// maxAgentRequestBody bounds what an agent may send the manager API: status
// patches and finalizer updates are a few KiB; the kube-apiserver's own
// limit is 3 MiB.
const maxAgentRequestBody = endpoint.MaxProxiedBody
