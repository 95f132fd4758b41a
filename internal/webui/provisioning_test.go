package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/authn"
)

// inventoriesAPI answers MachineInventory lists of namespace "shop" in two
// pages, refuses user "viewer-without-list" as the API would, and records
// who asked.
func inventoriesAPI(t *testing.T, asked *[]string) *httptest.Server {
	t.Helper()
	inv := func(name string, ready bool, labels string) string {
		s := "False"
		if ready {
			s = "True"
		}
		return `{"metadata":{"name":"` + name + `","namespace":"shop","labels":{` + labels + `}},"status":{"conditions":[{"type":"Ready","status":"` + s + `","reason":"x","message":"","lastTransitionTime":"2026-12-07T00:00:00Z"}]}}`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*asked = append(*asked, r.Header.Get("Impersonate-User")+" "+r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/apis/machines.edgefleet.io/v1alpha1/namespaces/shop/machineinventories" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"no such path"}`))
			return
		}
		if r.Header.Get("Impersonate-User") != "alice" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","code":403,"message":"machineinventories.machines.edgefleet.io is forbidden: User \"` + r.Header.Get("Impersonate-User") + `\" cannot list resource"}`))
			return
		}
		if r.URL.Query().Get("continue") == "" {
			_, _ = w.Write([]byte(`{"metadata":{"continue":"page2"},"items":[` + inv("s-1", true, `"role":"server"`) + `,` + inv("w-1", true, `"role":"worker"`) + `]}`))
			return
		}
		_, _ = w.Write([]byte(`{"metadata":{},"items":[` + inv("w-2", false, `"role":"worker"`) + `,` + inv("w-3", true, `"role":"worker","provisioning.edgefleet.io/cluster":"other","provisioning.edgefleet.io/pool":"default"`) +
			`,` + inv("w-4", true, `"role":"worker"`) + `,` + inv("w-0", true, `"role":"worker"`) + `]}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// bobAuth signs in token "bob" as bob, who may not list inventories.
type bobAuth struct{}

func (bobAuth) Authenticate(_ context.Context, r *http.Request) (*authn.User, error) {
	if authn.BearerToken(r) == "bob" {
		return &authn.User{Name: "bob"}, nil
	}
	return nil, authn.ErrUnauthenticated
}

func TestPreview(t *testing.T) {
	var asked []string
	srv := inventoriesAPI(t, &asked)
	p, err := newProxy(&rest.Config{Host: srv.URL, BearerToken: "manager-token"}, fakeAuth{}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	h := &provisioningRoutes{p: p}
	const shop = `{"apiVersion":"provisioning.edgefleet.io/v1alpha1","kind":"ProvisionedCluster","metadata":{"name":"shop","namespace":"shop"},"spec":{"distro":"k3s","version":"v1.33.5+k3s1",` +
		`"controlPlane":{"replicas":1,"machineSelector":{"matchLabels":{"role":"server"}}},"workers":[{"name":"default","replicas":1,"machineSelector":{"matchExpressions":[{"key":"role","operator":"In","values":["worker"]}]}}]}}`
	for _, tc := range []struct {
		name, method, token, body string
		want                      int
		wantMsg                   string
		check                     func(t *testing.T, p Preview)
	}{
		{name: "GET is refused", method: "GET", token: "good", want: 405},
		{name: "no credential", method: "POST", body: shop, want: 401},
		{name: "not a ProvisionedCluster", method: "POST", token: "good", body: `{"spec":{"machines":3}}`, want: 400, wantMsg: "unknown field"},
		{name: "no namespace", method: "POST", token: "good", body: `{"metadata":{"name":"x"}}`, want: 400, wantMsg: "metadata.namespace"},
		{name: "not a namespace name", method: "POST", token: "good", body: `{"metadata":{"name":"x","namespace":"a/b"}}`, want: 400, wantMsg: "is not a namespace name"},
		{name: "bad selector, named by pool as the CLI names it", method: "POST", token: "good",
			body: `{"metadata":{"name":"x","namespace":"shop"},"spec":{"workers":[{"name":"gpu","machineSelector":{"matchExpressions":[{"key":"a","operator":"In"}]}}]}}`,
			want: 422, wantMsg: "spec.workers[0] (gpu).machineSelector"},
		{name: "adopt.Match over every page, as the caller", method: "POST", token: "good", body: shop, want: 200, check: func(t *testing.T, p Preview) {
			if p.Inventories != 6 || len(p.Pools) != 2 {
				t.Fatalf("preview %+v", p)
			}
			cp, w := p.Pools[0], p.Pools[1]
			if cp.Name != "control-plane" || cp.Matching != 1 || !reflect.DeepEqual(cp.WouldAdopt, []string{"s-1"}) || cp.Missing != 0 || cp.Message != "" {
				t.Errorf("control plane %+v", cp)
			}
			if w.Name != "default" || w.Selector != "role in (worker)" || w.Matching != 5 || !reflect.DeepEqual(w.WouldAdopt, []string{"w-0"}) ||
				!reflect.DeepEqual(w.AlsoAvailable, []string{"w-1", "w-4"}) || !reflect.DeepEqual(w.NotReady, []string{"w-2"}) ||
				!reflect.DeepEqual(w.Taken, []TakenMachine{{Name: "w-3", By: "other/default"}}) || len(w.Adopted) != 0 {
				t.Errorf("workers %+v", w)
			}
		}},
		{name: "the API's refusal is passed on", method: "POST", token: "bob", body: shop, want: 403, wantMsg: `User \"bob\" cannot list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			req := httptest.NewRequest(tc.method, PreviewPath, strings.NewReader(tc.body))
			req.Header.Set(UIHeader, "1")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			if tc.token == "bob" {
				p.auth = bobAuth{}
				defer func() { p.auth = fakeAuth{} }()
			}
			h.servePreview(rec, req)
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.wantMsg) {
				t.Fatalf("%d %s; want %d with %q", rec.Code, rec.Body, tc.want, tc.wantMsg)
			}
			if tc.want == 200 {
				if len(asked) != 2 || !strings.HasPrefix(asked[0], "alice ") || !strings.Contains(asked[1], "continue=page2") {
					t.Errorf("API requests %v: want two pages listed as alice", asked)
				}
				var p Preview
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
				tc.check(t, p)
			} else if tc.want < 403 && len(asked) > 0 {
				t.Errorf("a refused preview reached the API: %v", asked)
			}
		})
	}
}

func TestReleases(t *testing.T) {
	for _, tc := range []struct {
		name, token string
		versions    map[string][]string
		code        int
		want        string
	}{
		{"not signed in", "", nil, 401, "no valid credential"},
		{"no list: any version", "good", nil, 200, `{"configured":false,"versions":{}}`},
		{"a list", "good", map[string][]string{"k3s": {"v1.33.5+k3s1"}}, 200, `{"configured":true,"versions":{"k3s":["v1.33.5+k3s1"]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newProvisioningRoutes(&proxy{auth: fakeAuth{}}, tc.versions)
			req := httptest.NewRequest("GET", ReleasesPath, nil)
			req.Header.Set(UIHeader, "1")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.serveReleases(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("%d %s, want %d %s", rec.Code, rec.Body, tc.code, tc.want)
			}
		})
	}
}

// BenchmarkPreview5000 is one preview over 5,000 inventories (10 pages of
// 500 from the API, decoded and matched): what a Create cluster page costs
// the manager per form change in a large namespace.
func BenchmarkPreview5000(b *testing.B) {
	pages := make([][]byte, 10)
	for p := range pages {
		var items []string
		for i := range 500 {
			n := p*500 + i
			// As the API serves them: managed fields and a plan report included.
			items = append(items, fmt.Sprintf(`{"metadata":{"name":"m-%05d","namespace":"shop","labels":{"role":"%s","site":"s%d","machines.edgefleet.io/manufacturer":"ACME"},`+
				`"managedFields":[{"manager":"edgefleet","operation":"Update","apiVersion":"machines.edgefleet.io/v1alpha1","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:role":{},"f:site":{}}},"f:spec":{"f:tpmHash":{}}}}]},`+
				`"spec":{"tpmHash":"abababababababababababababababababababababababababababababababab"},"status":{"plan":{"checksum":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","appliedChecksum":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"},`+
				`"conditions":[{"type":"Ready","status":"True","reason":"x","message":"","lastTransitionTime":"2026-12-07T00:00:00Z"}]}}`, n, []string{"server", "worker"}[n%2], n%10))
		}
		cont := ""
		if p < len(pages)-1 {
			cont = fmt.Sprint(p + 1)
		}
		pages[p] = []byte(`{"metadata":{"continue":"` + cont + `"},"items":[` + strings.Join(items, ",") + `]}`)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := 0
		if c := r.URL.Query().Get("continue"); c != "" {
			fmt.Sscan(c, &p)
		}
		_, _ = w.Write(pages[p])
	}))
	defer srv.Close()
	p, err := newProxy(&rest.Config{Host: srv.URL}, fakeAuth{}, logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	h := newProvisioningRoutes(p, nil)
	body := `{"metadata":{"name":"shop","namespace":"shop"},"spec":{"controlPlane":{"replicas":3,"machineSelector":{"matchLabels":{"role":"server","site":"s2"}}},` +
		`"workers":[{"name":"w","replicas":100,"machineSelector":{"matchExpressions":[{"key":"site","operator":"In","values":["s1","s3"]}]}}]}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", PreviewPath, strings.NewReader(body))
		req.Header.Set(UIHeader, "1")
		req.Header.Set("Authorization", "Bearer good")
		rec := httptest.NewRecorder()
		h.servePreview(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
