package bundlereader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	helmregistry "helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// packageChart writes a real chart and packages it with Helm; it returns
// the archive's path.
func packageChart(t *testing.T, name, version string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	files := map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: " + name + "\nversion: " + version + "\n",
		"values.yaml":       "greeting: hello\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  version: \"" + version + "\"\n",
	}
	for n, data := range files {
		p := filepath.Join(src, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := chartloader.LoadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chartutil.Save(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// chartVersionIn returns the version in the bundle's copy of Chart.yaml
// below dir.
func chartVersionIn(t *testing.T, b *Bundle, dir string) string {
	t.Helper()
	for _, r := range b.Manifest.Resources {
		if r.Name == dir+"/Chart.yaml" {
			var md chartv2.Metadata
			if err := sigsyaml.Unmarshal([]byte(r.Content), &md); err != nil {
				t.Fatal(err)
			}
			return md.Version
		}
	}
	t.Fatalf("no %s/Chart.yaml in bundle %s", dir, b.Bundle.Name)
	return ""
}

func TestHelmRepositoryChart(t *testing.T) {
	g := check{t}
	repoDir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	t.Cleanup(srv.Close)

	index := repo.NewIndexFile()
	for _, v := range []string{"0.9.0", "1.0.0", "1.2.0", "1.10.0", "1.11.0-rc.1", "2.0.0"} {
		archive := packageChart(t, "mychart", v)
		data, err := os.ReadFile(archive)
		g.noErr(err)
		g.noErr(os.WriteFile(filepath.Join(repoDir, filepath.Base(archive)), data, 0o644))
		sum := sha256.Sum256(data)
		md := &chartv2.Metadata{APIVersion: "v2", Name: "mychart", Version: v}
		g.noErr(index.MustAdd(md, filepath.Base(archive), srv.URL+"/", "sha256:"+hex.EncodeToString(sum[:])))
	}
	g.noErr(index.WriteFile(filepath.Join(repoDir, "index.yaml"), 0o644))

	root := writeTree(t, map[string]string{
		"fleet.yaml": `helm:
  repo: ` + srv.URL + `
  chart: mychart
  version: ">=1.0.0 <2.0.0"
  values: {a: 1}
targetCustomizations:
- name: next
  clusterGroup: canary
  helm:
    version: 2.0.0
- name: values-only
  clusterGroup: other
  helm:
    values: {a: 2}
`,
	})
	bundles, err := Read(context.Background(), Options{Name: "myapp"}, root)
	g.noErr(err)
	b := bundles[0]
	h := b.Bundle.Spec.Helm
	g.true(strings.HasPrefix(h.Chart, ChartDir+"/"), "helm.chart %q does not point into %s", h.Chart, ChartDir)
	g.eq(h.Repo, "")
	g.eq(h.Version, "1.10.0")
	g.eq(chartVersionIn(t, b, h.Chart), "1.10.0")
	g.has(resourceNames(b), h.Chart+"/templates/cm.yaml", h.Chart+"/values.yaml")

	next := b.Bundle.Spec.Targets[0].Helm
	g.eq(next.Version, "2.0.0")
	g.eq(chartVersionIn(t, b, next.Chart), "2.0.0")
	g.eq(b.Bundle.Spec.Targets[1].Helm.Chart, "")

	t.Run("no matching version", func(t *testing.T) {
		root := writeTree(t, map[string]string{"fleet.yaml": "helm:\n  repo: " + srv.URL + "\n  chart: mychart\n  version: ^3.0.0\n"})
		_, err := Read(context.Background(), Options{Name: "myapp"}, root)
		check{t}.errContains(err, `fleet.yaml:3: chart "mychart" in `+srv.URL+`: no version matches "^3.0.0" (available: 0.9.0, 1.0.0`)
	})
	t.Run("unknown chart", func(t *testing.T) {
		root := writeTree(t, map[string]string{"fleet.yaml": "helm:\n  repo: " + srv.URL + "\n  chart: other\n"})
		_, err := Read(context.Background(), Options{Name: "myapp"}, root)
		check{t}.errContains(err, `chart "other" not found in Helm repository`)
	})
	t.Run("tampered archive", func(t *testing.T) {
		g := check{t}
		g.noErr(os.WriteFile(filepath.Join(repoDir, "mychart-0.9.0.tgz"), []byte("not the chart"), 0o644))
		root := writeTree(t, map[string]string{"fleet.yaml": "helm:\n  repo: " + srv.URL + "\n  chart: mychart\n  version: 0.9.0\n"})
		_, err := Read(context.Background(), Options{Name: "myapp"}, root)
		g.errContains(err, "does not match the digest in index.yaml")
	})
}

func TestHelmOCIChart(t *testing.T) {
	g := check{t}
	t.Setenv("HELM_CONFIG_HOME", t.TempDir())
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	client, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP(), helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "creds.json")))
	g.noErr(err)
	for _, v := range []string{"1.0.0", "1.3.0", "2.0.0"} {
		data, err := os.ReadFile(packageChart(t, "mychart", v))
		g.noErr(err)
		_, err = client.Push(data, host+"/charts/mychart:"+v)
		g.noErr(err)
	}

	tests := []struct {
		name, chart, version, want string
	}{
		{"range", "oci://" + host + "/charts/mychart", "^1.0.0", "1.3.0"},
		{"exact", "oci://" + host + "/charts/mychart", "1.0.0", "1.0.0"},
		{"latest", "oci://" + host + "/charts/mychart", "", "2.0.0"},
		{"tag in reference", "oci://" + host + "/charts/mychart:1.3.0", "", "1.3.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := check{t}
			fy := "helm:\n  chart: " + tc.chart + "\n"
			if tc.version != "" {
				fy += "  version: \"" + tc.version + "\"\n"
			}
			root := writeTree(t, map[string]string{"fleet.yaml": fy})
			bundles, err := Read(context.Background(), Options{Name: "myapp", RegistryPlainHTTP: true}, root)
			g.noErr(err)
			h := bundles[0].Bundle.Spec.Helm
			g.eq(h.Version, tc.want)
			g.eq(chartVersionIn(t, bundles[0], h.Chart), tc.want)
		})
	}

	t.Run("missing chart", func(t *testing.T) {
		root := writeTree(t, map[string]string{"fleet.yaml": "helm:\n  chart: oci://" + host + "/charts/nothere\n  version: 1.0.0\n"})
		_, err := Read(context.Background(), Options{Name: "myapp", RegistryPlainHTTP: true}, root)
		check{t}.errContains(err, "fleet.yaml:2: pulling "+host+"/charts/nothere:1.0.0")
	})
}

func TestHelmChartURL(t *testing.T) {
	g := check{t}
	archive := packageChart(t, "urlchart", "0.3.0")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, archive)
	}))
	t.Cleanup(srv.Close)
	root := writeTree(t, map[string]string{"fleet.yaml": "helm:\n  chart: " + srv.URL + "/urlchart-0.3.0.tgz\n"})
	bundles, err := Read(context.Background(), Options{Name: "myapp"}, root)
	g.noErr(err)
	h := bundles[0].Bundle.Spec.Helm
	g.eq(h.Version, "0.3.0")
	g.eq(chartVersionIn(t, bundles[0], h.Chart), "0.3.0")
}

// TestHelmDependencyUpdate: as Fleet runs `helm dependency update`, a local
// chart's missing dependencies are added to the bundle under charts/ — a
// file:// one from the bundle, one from an HTTP Helm repository (through
// the guarded download) — and the chart renders with them;
// disableDependencyUpdate leaves charts/ alone; a dependency outside the
// bundle or in a named repository is an error naming it.
func TestHelmDependencyUpdate(t *testing.T) {
	g := check{t}
	repoDir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	t.Cleanup(srv.Close)
	index := repo.NewIndexFile()
	archive := packageChart(t, "remotedep", "1.2.3")
	data, err := os.ReadFile(archive)
	g.noErr(err)
	g.noErr(os.WriteFile(filepath.Join(repoDir, filepath.Base(archive)), data, 0o644))
	sum := sha256.Sum256(data)
	g.noErr(index.MustAdd(&chartv2.Metadata{APIVersion: "v2", Name: "remotedep", Version: "1.2.3"}, filepath.Base(archive), srv.URL+"/", "sha256:"+hex.EncodeToString(sum[:])))
	g.noErr(index.WriteFile(filepath.Join(repoDir, "index.yaml"), 0o644))

	chartYAML := "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: localdep\n  version: 0.1.0\n  repository: file://../localdep\n- name: remotedep\n  version: ^1.0.0\n  repository: " + srv.URL + "\n"
	files := map[string]string{
		"fleet.yaml":                    "helm:\n  chart: ./app\n",
		"app/Chart.yaml":                chartYAML,
		"app/templates/cm.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
		"localdep/Chart.yaml":           "apiVersion: v2\nname: localdep\nversion: 0.1.0\n",
		"localdep/templates/local.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n",
	}
	bundles, err := Read(context.Background(), Options{Name: "myapp"}, writeTree(t, files))
	g.noErr(err)
	names := resourceNames(bundles[0])
	g.has(names, "app/charts/localdep/Chart.yaml", "app/charts/localdep/templates/local.yaml", "app/charts/remotedep/Chart.yaml", "app/charts/remotedep/templates/cm.yaml")
	g.eq(chartVersionIn(t, bundles[0], "app/charts/remotedep"), "1.2.3")

	files["fleet.yaml"] = "helm:\n  chart: ./app\n  disableDependencyUpdate: true\n"
	bundles, err = Read(context.Background(), Options{Name: "myapp"}, writeTree(t, files))
	g.noErr(err)
	for _, n := range resourceNames(bundles[0]) {
		g.true(!strings.HasPrefix(n, "app/charts/"), "disableDependencyUpdate added %s", n)
	}

	// A target customization switching to another local chart: that
	// chart's dependencies are updated too, and its errors name the target.
	files["fleet.yaml"] = "helm:\n  chart: ./app\ntargetCustomizations:\n- name: v2\n  clusterSelector: {matchLabels: {v: \"2\"}}\n  helm:\n    chart: ./app2\n"
	files["app2/Chart.yaml"] = "apiVersion: v2\nname: app2\nversion: 0.2.0\ndependencies:\n- name: remotedep\n  version: 1.2.3\n  repository: " + srv.URL + "\n"
	files["app2/templates/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app2\n"
	bundles, err = Read(context.Background(), Options{Name: "myapp"}, writeTree(t, files))
	g.noErr(err)
	g.has(resourceNames(bundles[0]), "app/charts/remotedep/Chart.yaml", "app2/charts/remotedep/Chart.yaml", "app2/charts/remotedep/templates/cm.yaml")
	g.eq(chartVersionIn(t, bundles[0], "app2/charts/remotedep"), "1.2.3")

	files["fleet.yaml"] = "helm:\n  chart: ./app\n  disableDependencyUpdate: true\ntargetCustomizations:\n- name: v2\n  clusterSelector: {}\n  helm:\n    chart: ./app2\n"
	bundles, err = Read(context.Background(), Options{Name: "myapp"}, writeTree(t, files))
	g.noErr(err)
	for _, n := range resourceNames(bundles[0]) {
		g.true(!strings.HasPrefix(n, "app2/charts/"), "the bundle's disableDependencyUpdate did not reach the target: %s", n)
	}

	files["fleet.yaml"] = "helm:\n  chart: ./app\ntargetCustomizations:\n- name: v2\n  clusterSelector: {}\n  helm:\n    chart: ./app2\n"
	files["app2/Chart.yaml"] = "apiVersion: v2\nname: app2\nversion: 0.2.0\ndependencies:\n- name: gone\n  version: 1.0.0\n  repository: \"@stable\"\n"
	_, err = Read(context.Background(), Options{Name: "myapp"}, writeTree(t, files))
	g.errContains(err, `fleet.yaml:7: chart dependency "gone"`)
	delete(files, "app2/Chart.yaml")
	delete(files, "app2/templates/cm.yaml")

	for _, tc := range []struct{ repo, want string }{
		{"file://../../elsewhere", "is outside the bundle"},
		{"@stable", "is a named repository"},
		{"", "has no repository and is not in app/charts/"},
	} {
		files := map[string]string{
			"fleet.yaml":     "helm:\n  chart: ./app\n",
			"app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: dep\n  version: 0.1.0\n  repository: \"" + tc.repo + "\"\n",
		}
		_, err := Read(context.Background(), Options{Name: "myapp"}, writeTree(t, files))
		g.errContains(err, `fleet.yaml:2: chart dependency "dep`)
		g.errContains(err, tc.want)
	}
}
