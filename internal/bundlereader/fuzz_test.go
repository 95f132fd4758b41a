package bundlereader

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// refuseNetwork keeps fuzzed fleet.yaml files (helm.repo, oci://) off the
// network.
type refuseNetwork struct{}

func (refuseNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network while fuzzing")
}

const fuzzMarker = "CANARY-fuzz-8f3a1c"

// FuzzRead builds a small tree from the input — a fleet.yaml, a values
// file and two symbolic links with arbitrary targets — next to a canary
// file outside it, and reads it with small limits: the reader must not
// panic, must not put the canary's bytes in any bundle, and must stay
// within its byte limits.
func FuzzRead(f *testing.F) {
	seeds := []struct {
		fleet, values, link1, link2 string
	}{
		{"defaultNamespace: x\n", "a: 1\n", "cm.yaml", "../cm.yaml"},
		{"helm:\n  chart: ./chart\n  valuesFiles: [values.yaml, x]\n", "a: 1\n", "../../outside/secret.txt", "."},
		{"helm:\n  chart: ./chart\n  valuesFiles: [sub/y]\n", "", "/etc/passwd", "../x"},
		{"kustomize:\n  dir: sub/y\n", "a: [1", "..", "../../.."},
		{"helm:\n  valuesFiles: [x/secret.txt]\n", "", "l", "l"},
		{"name: Bad_Name\n", "", "/proc/self/environ", "../../outside"},
		{"helm:\n  chart: ./x\n", "", "chart", "../chart/Chart.yaml"},
		{"targets: [{clusterSelector: {matchExpressions: [{key: a, operator: Bogus}]}}]\n", "", "", ""},
		{"helm:\n  repo: https://127.0.0.1:1/charts\n  chart: c\n", "", "x", "y"},
		{strings.Repeat("# big\n", 4000), strings.Repeat("k: v\n", 20000), "values.yaml", "../values.yaml"},
		{"&a [*a]\n", "*x\n", "sub", "y"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.fleet), []byte(s.values), s.link1, s.link2, false)
		f.Add([]byte(s.fleet), []byte(s.values), s.link1, s.link2, true)
	}
	limits := Limits{MaxFileBytes: 64 << 10, MaxFleetYAMLBytes: 16 << 10, MaxTotalBytes: 256 << 10}
	f.Fuzz(func(t *testing.T, fleet, values []byte, link1, link2 string, repoRoot bool) {
		if len(link1) > 256 || len(link2) > 256 || strings.ContainsRune(link1+link2, 0) {
			t.Skip()
		}
		base := t.TempDir()
		root := filepath.Join(base, "repo")
		outside := filepath.Join(base, "outside")
		mustWrite(t, filepath.Join(outside, "secret.txt"), fuzzMarker+"\n")
		mustWrite(t, filepath.Join(outside, "values.yaml"), "leak: "+fuzzMarker+"\n")
		app := filepath.Join(root, "app")
		mustWrite(t, filepath.Join(app, "fleet.yaml"), string(fleet))
		mustWrite(t, filepath.Join(app, "values.yaml"), string(values))
		mustWrite(t, filepath.Join(app, "cm.yaml"), cm)
		mustWrite(t, filepath.Join(app, "chart", "Chart.yaml"), "apiVersion: v2\nname: c\nversion: 0.1.0\n")
		if err := os.MkdirAll(filepath.Join(app, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if link1 != "" {
			_ = os.Symlink(link1, filepath.Join(app, "x"))
		}
		if link2 != "" {
			_ = os.Symlink(link2, filepath.Join(app, "sub", "y"))
		}
		opts := Options{
			Name:       "fuzz",
			Namespace:  "ns",
			Limits:     limits,
			HTTPClient: &http.Client{Transport: refuseNetwork{}, Timeout: time.Second},
		}
		if repoRoot {
			opts.BaseDir = root
		}
		bundles, err := Read(context.Background(), opts, app)
		if err != nil {
			if strings.Contains(err.Error(), fuzzMarker) {
				t.Fatalf("the error shows the outside file's content: %v", err)
			}
			return
		}
		var total int
		for _, b := range bundles {
			for _, r := range b.Manifest.Resources {
				data, err := Decoded(r)
				if err != nil {
					t.Fatal(err)
				}
				total += len(data)
				if len(data) > int(limits.MaxFileBytes) {
					t.Fatalf("%s is %d bytes, over the file limit", r.Name, len(data))
				}
				if strings.Contains(string(data), fuzzMarker) {
					t.Fatalf("bundle file %s holds the outside file's content", r.Name)
				}
			}
			if h := b.Bundle.Spec.Helm; h != nil && h.Values != nil && strings.Contains(string(h.Values.Raw), fuzzMarker) {
				t.Fatal("helm values hold the outside file's content")
			}
			for _, tg := range b.Bundle.Spec.Targets {
				if h := tg.Helm; h != nil && h.Values != nil && strings.Contains(string(h.Values.Raw), fuzzMarker) {
					t.Fatal("target helm values hold the outside file's content")
				}
			}
		}
		if total > int(limits.MaxTotalBytes) {
			t.Fatalf("%d bytes in bundles, over the total limit", total)
		}
	})
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
