package webui

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/authn"
)

// fakeAuth stands in for TokenReview (covered with a real kube-apiserver in
// internal/authn and test/e2e TestWebUI): token "good" is alice.
type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, r *http.Request) (*authn.User, error) {
	if authn.BearerToken(r) == "good" {
		return &authn.User{Name: "alice", UID: "u-1", Groups: []string{"dev", "system:authenticated"}, Extra: map[string][]string{"scopes.example/a b": {"x"}}}, nil
	}
	return nil, authn.ErrUnauthenticated
}

// upstream records what the Kubernetes API would receive.
func upstream(t *testing.T) (*httptest.Server, *http.Request) {
	t.Helper()
	got := &http.Request{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*got = *r.Clone(context.Background())
		got.Body = io.NopCloser(strings.NewReader(string(body)))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Status"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestSetupRegistersOnAServeMux(t *testing.T) {
	mux := http.NewServeMux()
	srv, _ := upstream(t)
	if err := Setup(mux, Options{Config: &rest.Config{Host: srv.URL}, Log: logr.Discard(), SeedImageDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusFound},
		{"GET", "/ui/", http.StatusOK},
		{"HEAD", "/ui/", http.StatusOK},
		{"POST", "/ui/", http.StatusMethodNotAllowed},
		{"GET", "/ui/nope.js", http.StatusNotFound},
		{"GET", "/ui/api/k8s/api/v1/namespaces", http.StatusForbidden},    // no UI header
		{"GET", "/ui/api/seedimages/ns/name/image", http.StatusForbidden}, // no UI header
		{"POST", "/ui/api/seedimages/ns/name/image", http.StatusMethodNotAllowed},
		{"GET", "/ui/api/provisioning/preview", http.StatusMethodNotAllowed},
		{"POST", "/ui/api/provisioning/preview", http.StatusForbidden}, // no UI header
		{"GET", "/ui/api/provisioning/releases", http.StatusForbidden}, // no UI header
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
		if tc.path != "/" && rec.Header().Get("Content-Security-Policy") != ContentSecurityPolicy {
			t.Errorf("%s %s: no CSP header", tc.method, tc.path)
		}
	}
}

func TestAssets(t *testing.T) {
	s, err := loadAssets()
	if err != nil {
		t.Fatal(err)
	}
	index, ok := s.files["index.html"]
	if !ok {
		t.Fatal("dist/index.html is missing: run `make ui`")
	}
	html := string(index.body)
	if strings.Contains(html, "<script>") || strings.Contains(html, "style=") || strings.Contains(html, "//") && strings.Contains(html, "http") {
		t.Errorf("index.html must have no inline script/style and no external URL:\n%s", html)
	}
	for name, a := range s.files {
		if name != "index.html" && !strings.Contains(html, "./"+name) {
			t.Errorf("%s is embedded but index.html does not load it (stale build? run `make ui`)", name)
		}
		if a.immutable == (name == "index.html") {
			t.Errorf("%s: immutable=%v", name, a.immutable)
		}
	}
	for _, tc := range []struct {
		accept string
		gz     bool
	}{{"", false}, {"gzip, br", true}, {"br;q=1, gzip;q=0", false}, {"GZIP", true}} {
		req := httptest.NewRequest("GET", "/ui/", nil)
		if tc.accept != "" {
			req.Header.Set("Accept-Encoding", tc.accept)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if tc.gz {
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatalf("Accept-Encoding %q: %v", tc.accept, err)
			}
			body, _ = io.ReadAll(zr)
		}
		if (rec.Header().Get("Content-Encoding") == "gzip") != tc.gz || string(body) != html {
			t.Errorf("Accept-Encoding %q: encoding %q, body ok %v", tc.accept, rec.Header().Get("Content-Encoding"), string(body) == html)
		}
		if rec.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("index.html Cache-Control %q", rec.Header().Get("Cache-Control"))
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/ui/", nil)
	req.Header.Set("If-None-Match", index.etag)
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", rec.Code)
	}
}

func TestProxy(t *testing.T) {
	srv, got := upstream(t)
	p, err := newProxy(&rest.Config{Host: srv.URL, BearerToken: "manager-token"}, fakeAuth{}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, token string
		header                    map[string]string
		body                      string
		want                      int
	}{
		{name: "no UI header", method: "GET", path: "/api/v1/pods", token: "good", want: 403},
		{name: "cross-site", method: "GET", path: "/api/v1/pods", token: "good", header: map[string]string{UIHeader: "1", "Sec-Fetch-Site": "cross-site"}, want: 403},
		{name: "no credential", method: "GET", path: "/api/v1/pods", header: map[string]string{UIHeader: "1"}, want: 401},
		{name: "bad token", method: "GET", path: "/api/v1/pods", token: "bad", header: map[string]string{UIHeader: "1"}, want: 401},
		{name: "not an API path", method: "GET", path: "/logs/", token: "good", header: map[string]string{UIHeader: "1"}, want: 404},
		{name: "dot-dot", method: "GET", path: "/api/../metrics", token: "good", header: map[string]string{UIHeader: "1"}, want: 404},
		{name: "too large", method: "POST", path: "/api/v1/namespaces", token: "good", header: map[string]string{UIHeader: "1"}, body: strings.Repeat("x", maxBody+1), want: 413},
		{name: "forwarded", method: "POST", path: "/apis/machines.edgefleet.io/v1alpha1/namespaces/x/machineregistrations", token: "good",
			header: map[string]string{UIHeader: "1", "Impersonate-User": "system:admin", "Impersonate-Group": "system:masters", "Cookie": "a=b"}, body: "kind: X", want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			*got = http.Request{}
			req := httptest.NewRequest(tc.method, APIPrefix+tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if tc.want != 200 {
				if got.Header != nil {
					t.Fatal("a refused request reached the Kubernetes API")
				}
				if !strings.Contains(rec.Body.String(), `"kind":"Status"`) {
					t.Errorf("refusal is not a Kubernetes Status: %s", rec.Body)
				}
				return
			}
			h := got.Header
			if got.URL.Path != tc.path {
				t.Errorf("path %q, want %q", got.URL.Path, tc.path)
			}
			if h.Get("Authorization") != "Bearer manager-token" {
				t.Errorf("Authorization %q: the manager's credential must carry the impersonation", h.Get("Authorization"))
			}
			if h.Get("Impersonate-User") != "alice" || h.Get("Impersonate-Uid") != "u-1" || !reflect.DeepEqual(h.Values("Impersonate-Group"), []string{"dev", "system:authenticated"}) {
				t.Errorf("impersonation %v", h)
			}
			if h.Get("Impersonate-Extra-scopes.example%2Fa%20b") != "x" {
				t.Errorf("extra not forwarded: %v", h)
			}
			if h.Get("Cookie") != "" || h.Get(UIHeader) != "" {
				t.Errorf("browser headers leaked upstream: %v", h)
			}
			if b, _ := io.ReadAll(got.Body); string(b) != tc.body {
				t.Errorf("body %q", b)
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("API responses must not be cached")
			}
		})
	}
}
