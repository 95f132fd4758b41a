package webui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/seedimage"
)

// TestSeedImageDownload: the UI's download route serves a SeedImage's files
// only to a caller the (stand-in) Kubernetes API lets read the SeedImage,
// asked as that caller; the capability URL's token never reaches the browser.
func TestSeedImageDownload(t *testing.T) {
	dir := t.TempDir()
	token := seedimage.NewDownloadToken()
	ext := &url.URL{Scheme: "https", Host: "manager.example"}
	image := []byte("an ISO, honestly")
	if err := os.WriteFile(seedimage.StoredPath(dir, token, seedimage.ImageFile), image, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seedimage.StoredPath(dir, token, seedimage.ImageFile)+".sha256", []byte("abc  seed.iso\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	objects := map[string]machinesv1.SeedImage{
		"ready":    {Status: machinesv1.SeedImageStatus{State: machinesv1.SeedImageReady, DownloadURL: seedimage.DownloadURL(ext, token, seedimage.ImageFile), Checksum: "abc"}},
		"building": {Status: machinesv1.SeedImageStatus{State: machinesv1.SeedImageBuilding}},
		"gone":     {Status: machinesv1.SeedImageStatus{State: machinesv1.SeedImageReady, DownloadURL: seedimage.DownloadURL(ext, seedimage.NewDownloadToken(), seedimage.ImageFile)}},
	}
	var asked []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Header.Get("Impersonate-User")+" "+r.Header.Get("Authorization")+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		si, ok := objects[name]
		switch {
		case name == "secret":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"seedimages \"secret\" is forbidden: User \"alice\" cannot get resource"}`))
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"seedimages \"` + name + `\" not found"}`))
		default:
			_ = json.NewEncoder(w).Encode(si)
		}
	}))
	t.Cleanup(api.Close)
	mux := http.NewServeMux()
	p, err := newProxy(&rest.Config{Host: api.URL, BearerToken: "manager-token"}, fakeAuth{}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(DownloadPrefix+"{namespace}/{name}/{file}", secure(&seedDownload{p: p, dir: dir}))

	for _, tc := range []struct {
		name, path, token string
		noUIHeader        bool
		want              int
		body, disposition string
	}{
		{name: "image", path: "fleet-default/ready/image", token: "good", want: 200, body: string(image), disposition: `attachment; filename="ready.iso"`},
		{name: "checksum", path: "fleet-default/ready/checksum", token: "good", want: 200, body: "abc  seed.iso\n", disposition: `attachment; filename="ready.sha256"`},
		{name: "no credential", path: "fleet-default/ready/image", want: 401, body: "Unauthorized"},
		{name: "bad token", path: "fleet-default/ready/image", token: "forged", want: 401},
		{name: "without the UI header (a plain link from another site)", path: "fleet-default/ready/image", token: "good", noUIHeader: true, want: 403, body: UIHeader},
		{name: "RBAC refuses", path: "fleet-default/secret/image", token: "good", want: 403, body: `cannot get resource`},
		{name: "no such SeedImage", path: "fleet-default/nope/image", token: "good", want: 404, body: `not found`},
		{name: "not built yet", path: "fleet-default/building/image", token: "good", want: 409, body: "is Building, not Ready"},
		{name: "files gone", path: "fleet-default/gone/image", token: "good", want: 404, body: "not on this manager replica"},
		{name: "other file", path: "fleet-default/ready/..%2f..%2fetc", token: "good", want: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", DownloadPrefix+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if !tc.noUIHeader {
				req.Header.Set(UIHeader, "1")
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.want || !strings.Contains(string(body), tc.body) {
				t.Fatalf("GET %s = %d %q, want %d with %q", tc.path, rec.Code, body, tc.want, tc.body)
			}
			if tc.disposition != "" && rec.Header().Get("Content-Disposition") != tc.disposition {
				t.Errorf("Content-Disposition %q, want %q", rec.Header().Get("Content-Disposition"), tc.disposition)
			}
			if strings.Contains(string(body), token) || strings.Contains(rec.Header().Get("Content-Disposition"), token) {
				t.Errorf("the response leaks the download token")
			}
		})
	}
	for _, a := range asked {
		if !strings.HasPrefix(a, "alice Bearer manager-token /apis/machines.edgefleet.io/v1alpha1/namespaces/fleet-default/seedimages/") {
			t.Errorf("the API was asked %q: want the manager's credential impersonating alice", a)
		}
	}
	if len(asked) == 0 {
		t.Error("the route never asked the API")
	}
}
