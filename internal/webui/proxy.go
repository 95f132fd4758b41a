package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/endpoint"
)

// UIHeader must be on every API request. Browsers send client certificates
// (and would send cookies) on cross-site requests too; a custom header makes
// any cross-origin use a CORS preflight, which the manager never answers, so
// another site cannot act as a user who signed in with a certificate.
const UIHeader = "X-Edgefleet-UI"

// maxBody bounds a request body: the kube-apiserver's own limit is 3 MiB.
const maxBody = endpoint.MaxProxiedBody

type authenticator interface {
	Authenticate(ctx context.Context, r *http.Request) (*authn.User, error)
}

type proxy struct {
	auth authenticator
	rp   *httputil.ReverseProxy
	log  logr.Logger
	// target and rt reach the manager's Kubernetes API with the manager's
	// credential; requests through them always impersonate a caller.
	target *url.URL
	rt     http.RoundTripper
}

func newProxy(cfg *rest.Config, a authenticator, log logr.Logger) (*proxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("web UI: parsing the Kubernetes API address %q: %w", cfg.Host, err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("web UI: building the Kubernetes API transport: %w", err)
	}
	p := &proxy{auth: a, log: log, target: target, rt: rt}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			user := pr.In.Context().Value(userKey{}).(*authn.User)
			rest := strings.TrimPrefix(pr.In.URL.Path, APIPrefix)
			pr.SetURL(target)
			pr.Out.URL.Path = strings.TrimSuffix(target.Path, "/") + rest
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del(UIHeader)
			authn.SetImpersonation(pr.Out.Header, user)
		},
		Transport:     rt,
		FlushInterval: -1,
		ModifyResponse: func(res *http.Response) error {
			res.Header.Set("Cache-Control", "no-store")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the browser went away (a closed watch)
			}
			writeStatus(w, http.StatusBadGateway, "the manager's Kubernetes API is unreachable: "+err.Error())
		},
	}
	return p, nil
}

type userKey struct{}

// fromUI refuses requests that did not come from the UI's own pages.
func fromUI(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get(UIHeader) != "1" {
		writeStatus(w, http.StatusForbidden, "requests to "+r.URL.Path+" must carry the header "+UIHeader+": 1 (sent by the edgefleet UI; use the kube-apiserver directly for other clients)")
		return false
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		writeStatus(w, http.StatusForbidden, "cross-site requests to the UI's API are refused")
		return false
	}
	return true
}

// authenticate answers 401/503 itself when the caller is not known.
func (p *proxy) authenticate(w http.ResponseWriter, r *http.Request) (*authn.User, bool) {
	user, err := p.auth.Authenticate(r.Context(), r)
	if err != nil {
		if errors.Is(err, authn.ErrUnauthenticated) {
			writeStatus(w, http.StatusUnauthorized, err.Error())
		} else {
			writeStatus(w, http.StatusServiceUnavailable, err.Error())
		}
		return nil, false
	}
	return user, true
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !fromUI(w, r) {
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, APIPrefix)
	if !allowedPath(rest) {
		writeStatus(w, http.StatusNotFound, "the UI's API proxy serves only Kubernetes API paths (/api/…, /apis/…, /version), not "+rest)
		return
	}
	user, ok := p.authenticate(w, r)
	if !ok {
		return
	}
	if err := endpoint.BufferBody(w, r, maxBody); err != nil {
		writeStatus(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
}

func allowedPath(p string) bool {
	if strings.Contains(p, "..") || strings.Contains(p, "//") {
		return false
	}
	return p == "/api" || p == "/apis" || p == "/version" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/apis/")
}

// writeStatus answers with a Kubernetes Status, whose message the UI shows.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	reason := map[int]string{401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 413: "RequestEntityTooLarge", 502: "InternalError", 503: "ServiceUnavailable"}[code]
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure", "message": msg, "reason": reason, "code": code})
}

// getAs GETs the path of segments (with query) from the manager's Kubernetes
// API impersonating user, so the manager's RBAC decides, and decodes the
// JSON answer (at most limit bytes) into v. A refusal comes back with the
// API's code and message, an unreachable API or an unreadable answer (what
// names it) as 502; success is code 0.
func (p *proxy) getAs(ctx context.Context, user *authn.User, query url.Values, limit int64, what string, v any, segments ...string) (int, string) {
	u := *p.target
	u.Path = path.Join(append([]string{"/", u.Path}, segments...)...)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	req.Header.Set("Accept", "application/json")
	authn.SetImpersonation(req.Header, user)
	res, err := p.rt.RoundTrip(req)
	if err != nil {
		return http.StatusBadGateway, "the manager's Kubernetes API is unreachable: " + err.Error()
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		var s struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &s)
		if s.Message == "" {
			s.Message = res.Status
		}
		return res.StatusCode, s.Message
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, limit)).Decode(v); err != nil {
		return http.StatusBadGateway, "reading " + what + ": " + err.Error()
	}
	return 0, ""
}
