package bundlereader

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestCredentialsBoundToChartOrigin: basic auth reaches only the origin the
// request was made for, over https; redirects to another origin, http and
// requests without a chart source (OCI registries) get none.
func TestCredentialsBoundToChartOrigin(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	record := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got[name+r.URL.Path] = r.Header.Get("Authorization")
			mu.Unlock()
		}
	}
	other := httptest.NewTLSServer(record("other"))
	t.Cleanup(other.Close)
	repo := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/away" {
			http.Redirect(w, r, other.URL+"/landed", http.StatusFound)
			return
		}
		record("repo")(w, r)
	}))
	t.Cleanup(repo.Close)
	plain := httptest.NewServer(record("plain"))
	t.Cleanup(plain.Close)

	base := repo.Client().Transport
	client := func(allowHTTP bool) *http.Client {
		return &http.Client{Transport: NewCredentialsTransport(HelmCredentials{Username: "u", Password: "p", AllowPlainHTTP: allowHTTP}, base)}
	}
	get := func(c *http.Client, source, target string) error {
		u, _ := url.Parse(source)
		req, _ := http.NewRequestWithContext(withCredentialOrigin(context.Background(), u), http.MethodGet, target, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	c := client(false)
	for _, target := range []string{repo.URL + "/index.yaml", repo.URL + "/away", other.URL + "/named-by-index"} {
		if err := get(c, repo.URL+"/charts", target); err != nil {
			t.Fatal(err)
		}
	}
	if err := get(c, plain.URL, plain.URL+"/index.yaml"); err == nil || !strings.Contains(err.Error(), "insecurePlainHTTP") {
		t.Fatalf("plain http with credentials: %v, want a refusal naming insecurePlainHTTP", err)
	}
	req, _ := http.NewRequest(http.MethodGet, repo.URL+"/no-source", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
	}
	if err := get(client(true), plain.URL, plain.URL+"/allowed"); err != nil {
		t.Fatal(err)
	}
	want := "Basic dTpw"
	for path, auth := range map[string]string{
		"repo/index.yaml":      want,
		"other/landed":         "",
		"other/named-by-index": "",
		"repo/no-source":       "",
		"plain/allowed":        want,
	} {
		if v, ok := got[path]; !ok || v != auth {
			t.Errorf("%s: requested %v, Authorization %q, want %q", path, ok, v, auth)
		}
	}
	if _, sent := got["plain/index.yaml"]; sent {
		t.Error("a request went out over plain http although credentials were refused for it")
	}
}
