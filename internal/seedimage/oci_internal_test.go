package seedimage

import (
	"net/http"
	"strings"
	"testing"
)

func TestIsOCIReference(t *testing.T) {
	for ref, want := range map[string]bool{
		"oci://registry.example/os/iso:1":                         true,
		"registry.example/os/iso:1":                               true,
		"registry.example:5000/os/iso":                            true,
		"127.0.0.1:5000/os/iso@sha256:" + strings.Repeat("a", 64): true,
		"localhost/os/iso:1":                                      true,
		"/srv/images/os.iso":                                      false,
		"https://images.example/os.iso":                           false,
		"os.iso":                                                  false,
		"images/os.iso":                                           false,
		"./images/os.iso":                                         false,
		"registry.example/":                                       false,
		"registry.example/UPPER/case:1":                           false,
	} {
		if got := isOCIReference(ref); got != want {
			t.Errorf("isOCIReference(%q) = %v, want %v", ref, got, want)
		}
	}
}

type recorder struct{ got []string }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.got = append(r.got, req.URL.String())
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

// go-containerregistry falls back to plain HTTP for private and .local
// registries; the manager allows it for loopback registries only.
func TestPlainHTTPOnlyToLoopbackRegistries(t *testing.T) {
	for u, allowed := range map[string]bool{
		"http://127.0.0.1:5000/v2/":          true,
		"http://[::1]:5000/v2/":              true,
		"http://localhost:5000/v2/":          true,
		"https://10.0.0.5:5000/v2/":          true,
		"https://registry.example/v2/":       true,
		"http://10.0.0.5:5000/v2/":           false,
		"http://192.168.1.10/v2/":            false,
		"http://registry.local/v2/":          false,
		"http://registry.example/v2/":        false,
		"http://127.0.0.1.attacker.example/": false,
	} {
		rec := &recorder{}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		resp, err := loopbackOnlyPlainHTTP{rec}.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		if allowed && (err != nil || len(rec.got) != 1) {
			t.Errorf("%s: %v, want it sent", u, err)
		}
		if !allowed && (err == nil || len(rec.got) != 0 || !strings.Contains(err.Error(), "refusing plain HTTP")) {
			t.Errorf("%s: err %v, sent %v: want it refused before sending", u, err, rec.got)
		}
	}
}
