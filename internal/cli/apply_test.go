package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/test/harness"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := NewRoot(&stdout, &stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return stdout.String(), err
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func configMap(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  a: b\n", name)
}

// bundleSet returns the bundles of a set by name.
func bundleSet(t *testing.T, c client.Client, ns, set string) map[string]fleetv1.Bundle {
	t.Helper()
	var list fleetv1.BundleList
	if err := c.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{fleetv1.BundleSetLabel: set}); err != nil {
		t.Fatal(err)
	}
	out := map[string]fleetv1.Bundle{}
	for _, b := range list.Items {
		out[b.Name] = b
	}
	return out
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return lines
}

func expectLines(t *testing.T, out string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := sortedLines(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant lines:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestApply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	cluster := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	c := cluster.Client
	ctx := context.Background()
	kubeconfig := cluster.KubeconfigPath()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: defaultApplyNamespace}}); err != nil {
		t.Fatal(err)
	}
	const ns = defaultApplyNamespace
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.yaml":          configMap("root"),
		"web/fleet.yaml":  "defaultNamespace: web\nhelm:\n  values: {replicas: 2}\n",
		"web/deploy.yaml": configMap("web"),
		"db/fleet.yaml":   "name: database\n",
		"db/x.yaml":       configMap("db"),
		"db/binary.dat":   "\x00\x01\xff",
	})
	apply := func(extra ...string) (string, error) {
		return runCLI(t, append([]string{"apply", "--kubeconfig", kubeconfig, "--label", "team=edge"}, append(extra, "myapp", dir)...)...)
	}

	// A bundle of another set must survive pruning.
	other := &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns, Labels: map[string]string{fleetv1.BundleSetLabel: "someone-else"}}}
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	t.Run("creates bundles and their content", func(t *testing.T) {
		out, err := apply()
		if err != nil {
			t.Fatal(err)
		}
		expectLines(t, out, "bundle/myapp created", "bundle/myapp-web created", "bundle/database created")
		set := bundleSet(t, c, ns, "myapp")
		if len(set) != 3 {
			t.Fatalf("got %d bundles, want 3", len(set))
		}
		web := set["myapp-web"]
		if web.Labels["team"] != "edge" || web.Spec.DefaultNamespace != "web" || len(web.Spec.Resources) != 0 || web.Spec.ContentsID == "" {
			t.Fatalf("unexpected bundle: %+v", web)
		}
		if string(web.Spec.Helm.Values.Raw) != `{"replicas":2}` {
			t.Errorf("helm values = %s", web.Spec.Helm.Values.Raw)
		}
		m, err := content.Load(ctx, c, set["database"].Spec.ContentsID)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]string{}
		for _, r := range m.Resources {
			data, err := bundlereader.Decoded(r)
			if err != nil {
				t.Fatal(err)
			}
			files[r.Name] = string(data)
		}
		if len(files) != 2 || files["x.yaml"] != configMap("db") || files["binary.dat"] != "\x00\x01\xff" {
			t.Errorf("content of database: %q", files)
		}
	})

	t.Run("re-apply without changes", func(t *testing.T) {
		out, err := apply()
		if err != nil {
			t.Fatal(err)
		}
		expectLines(t, out, "bundle/myapp unchanged", "bundle/myapp-web unchanged", "bundle/database unchanged")
	})

	t.Run("changed file updates one bundle", func(t *testing.T) {
		before := bundleSet(t, c, ns, "myapp")["myapp-web"].Spec.ContentsID
		writeFiles(t, dir, map[string]string{"web/deploy.yaml": configMap("web2")})
		out, err := apply()
		if err != nil {
			t.Fatal(err)
		}
		expectLines(t, out, "bundle/myapp unchanged", "bundle/myapp-web configured", "bundle/database unchanged")
		if after := bundleSet(t, c, ns, "myapp")["myapp-web"].Spec.ContentsID; after == before {
			t.Error("contentsID did not change")
		}
	})

	t.Run("removed directory is pruned", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(dir, "db")); err != nil {
			t.Fatal(err)
		}
		out, err := apply()
		if err != nil {
			t.Fatal(err)
		}
		expectLines(t, out, "bundle/myapp unchanged", "bundle/myapp-web unchanged", "bundle/database pruned")
		if _, ok := bundleSet(t, c, ns, "myapp")["database"]; ok {
			t.Error("database was not pruned")
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(other), &fleetv1.Bundle{}); err != nil {
			t.Errorf("bundle of another set: %v", err)
		}
	})

	t.Run("bad fleet.yaml changes nothing", func(t *testing.T) {
		before := bundleSet(t, c, ns, "myapp")
		writeFiles(t, dir, map[string]string{
			"new/fleet.yaml":  "",
			"new/a.yaml":      configMap("new"),
			"web/fleet.yaml":  "defaultNamespace: web\nhelm:\n  timeoutSeconds: soon\n",
			"web/deploy.yaml": configMap("web3"),
		})
		defer writeFiles(t, dir, map[string]string{"web/fleet.yaml": "defaultNamespace: web\n"})
		_, err := apply()
		want := filepath.Join(dir, "web", "fleet.yaml") + `:3: helm.timeoutSeconds: expected a whole number`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want %q", err, want)
		}
		after := bundleSet(t, c, ns, "myapp")
		if len(after) != len(before) {
			t.Fatalf("bundles changed: %d → %d", len(before), len(after))
		}
		for name, b := range before {
			if after[name].ResourceVersion != b.ResourceVersion {
				t.Errorf("bundle %s was written", name)
			}
		}
	})

	t.Run("output writes nothing", func(t *testing.T) {
		out, err := runCLI(t, "apply", "--kubeconfig", kubeconfig, "-o", "-", "preview", dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := bundleSet(t, c, ns, "preview"); len(got) != 0 {
			t.Fatalf("-o - wrote %d bundles", len(got))
		}
		docs := strings.Split(out, "\n---\n")
		if len(docs) != 3 {
			t.Fatalf("want 3 YAML documents, got %d:\n%s", len(docs), out)
		}
		found := false
		for _, doc := range docs {
			var b fleetv1.Bundle
			if err := yaml.UnmarshalStrict([]byte(doc), &b); err != nil {
				t.Fatal(err)
			}
			if b.Kind != "Bundle" || b.Spec.ContentsID != "" || b.Labels[fleetv1.BundleSetLabel] != "preview" {
				t.Errorf("unexpected bundle: %+v", b)
			}
			for _, r := range b.Spec.Resources {
				if r.Encoding != fleetv1.BundleResourceEncodingBase64Gzip {
					t.Errorf("resource %s has encoding %q", r.Name, r.Encoding)
				}
				data, err := bundlereader.Decoded(r)
				if err != nil {
					t.Fatal(err)
				}
				if b.Name == "preview-new" && r.Name == "a.yaml" {
					found = string(data) == configMap("new")
				}
			}
		}
		if !found {
			t.Error("preview-new/a.yaml missing or wrong in the output")
		}
	})

	t.Run("missing namespace", func(t *testing.T) {
		_, err := runCLI(t, "apply", "--kubeconfig", kubeconfig, "-n", "nope", "myapp", dir)
		if err == nil || !strings.Contains(err.Error(), `namespace "nope" does not exist`) {
			t.Fatalf("error = %v", err)
		}
	})

	t.Run("a 20 MiB bundle applies in chunks", func(t *testing.T) {
		big := t.TempDir()
		for i := range 20 {
			raw := make([]byte, 700<<10)
			_, _ = rand.Read(raw)
			cm := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-%d\ndata:\n  blob: %s\n", i, base64.StdEncoding.EncodeToString(raw))
			writeFiles(t, big, map[string]string{fmt.Sprintf("cm-%02d.yaml", i): cm})
		}
		out, err := runCLI(t, "apply", "--kubeconfig", kubeconfig, "big", big)
		if err != nil {
			t.Fatal(err)
		}
		expectLines(t, out, "bundle/big created")
		b := bundleSet(t, c, ns, "big")["big"]
		var top fleetv1.Content
		if err := c.Get(ctx, client.ObjectKey{Name: b.Spec.ContentsID}, &top); err != nil {
			t.Fatal(err)
		}
		if top.Size < 18<<20 || len(top.Chunks) < 2 {
			t.Fatalf("content size %d with %d chunks, want ≥18 MiB in chunks", top.Size, len(top.Chunks))
		}
		m, err := content.Load(ctx, c, b.Spec.ContentsID)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Resources) != 20 {
			t.Fatalf("got %d resources back", len(m.Resources))
		}
	})
}

// TestApplyWarnsAboutUnknownFleetYAMLKeys: `apply -o -` of a fleet.yaml with
// a key edgefleet does not know succeeds, printing the warning (file:line,
// did you mean) on stderr; --strict fails on it.
func TestApplyWarnsAboutUnknownFleetYAMLKeys(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"fleet.yaml": "defaultNamespace: web\nhelm:\n  releaseNam: web\n", "cm.yaml": configMap("a")})
	var stdout, stderr bytes.Buffer
	root := NewRoot(&stdout, &stderr)
	root.SetArgs([]string{"apply", "-o", "-", "myapp", dir})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr.String())
	}
	want := "warning: " + filepath.Join(dir, "fleet.yaml") + `:3: unknown field "releaseNam" in helm (did you mean "releaseName"?); ignored`
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
	if !strings.Contains(stdout.String(), "kind: Bundle") || !strings.Contains(stdout.String(), fleetv1.FleetYAMLWarningsAnnotation) {
		t.Errorf("stdout lacks the bundle with its warnings annotation:\n%s", stdout.String())
	}
	_, err := runCLI(t, "apply", "--strict", "-o", "-", "myapp", dir)
	if err == nil || !strings.Contains(err.Error(), `fleet.yaml:3: unknown field "releaseNam" in helm`) {
		t.Errorf("--strict: %v, want the unknown field as an error", err)
	}
}
