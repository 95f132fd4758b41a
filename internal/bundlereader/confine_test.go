package bundlereader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// canary writes a file with a random marker outside every tree a test
// reads and returns its path and the marker.
func canary(t testing.TB) (string, string) {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	marker := "CANARY-" + hex.EncodeToString(b)
	p := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(p, []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: "+marker+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, marker
}

// symlinks creates links (path → target) below root.
func symlinks(t testing.TB, root string, links map[string]string) {
	t.Helper()
	for name, target := range links {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

// chain climbs n levels above the directory holding it with links whose
// text looks local: l0 -> ., l1 -> l0/.., l2 -> l1/.., ...
func chain(dir string, n int) (map[string]string, string) {
	links := map[string]string{dir + "/l0": "."}
	for i := 1; i <= n; i++ {
		links[dir+"/l"+strconv.Itoa(i)] = "l" + strconv.Itoa(i-1) + "/.."
	}
	return links, "l" + strconv.Itoa(n)
}

func containsMarker(bundles []*Bundle, marker string) bool {
	for _, b := range bundles {
		for _, r := range b.Manifest.Resources {
			data, err := Decoded(r)
			if err == nil && strings.Contains(string(data), marker) {
				return true
			}
		}
		if b.Bundle.Spec.Helm != nil && b.Bundle.Spec.Helm.Values != nil && strings.Contains(string(b.Bundle.Spec.Helm.Values.Raw), marker) {
			return true
		}
	}
	return false
}

// TestReadRefusesLinksOutOfTheRoot: every shape of link that leaves the
// root is an error naming the path, and the outside file's bytes are in no
// bundle, both when the root is a repository (BaseDir) and when it is the
// directory given (edgefleet apply).
func TestReadRefusesLinksOutOfTheRoot(t *testing.T) {
	secret, marker := canary(t)
	up := strings.Repeat("../", 40)
	chainLinks, top := chain("app", 40)
	chainLinks["app/secret.txt"] = top + secret
	chart := "apiVersion: v2\nname: c\nversion: 0.1.0\n"
	cases := []struct {
		name  string
		files map[string]string
		links map[string]string
		want  string // in the error
	}{
		{"chain of local-looking links", map[string]string{"app/cm.yaml": cm}, chainLinks, "app/l"},
		{"absolute link to a file", map[string]string{"app/cm.yaml": cm}, map[string]string{"app/secret.yaml": secret}, "app/secret.yaml"},
		{"relative link climbing out", map[string]string{"app/cm.yaml": cm}, map[string]string{"app/secret.yaml": up + secret[1:]}, "app/secret.yaml"},
		{"link to a directory outside", map[string]string{"app/cm.yaml": cm}, map[string]string{"app/etc": filepath.Dir(secret)}, "app/etc"},
		{"link to /proc", map[string]string{"app/cm.yaml": cm}, map[string]string{"app/env.txt": "/proc/self/environ"}, "app/env.txt"},
		{"chart template link", map[string]string{"app/fleet.yaml": "helm:\n  chart: ./chart\n", "app/chart/Chart.yaml": chart}, map[string]string{"app/chart/templates/x": "../../../../../../../../../../../../../../../../../../../.."}, "app/chart/templates/x"},
		{"fleet.yaml is a link", map[string]string{"app/cm.yaml": cm}, map[string]string{"app/fleet.yaml": secret}, "app/fleet.yaml"},
		{"values file link", map[string]string{"app/fleet.yaml": "helm:\n  chart: ./chart\n  valuesFiles: [.v/secret.txt]\n", "app/chart/Chart.yaml": chart}, map[string]string{"app/.v": filepath.Dir(secret)}, "app/.v/secret.txt"},
		{"values file link in a directory chain", map[string]string{"app/fleet.yaml": "helm:\n  chart: ./chart\n  valuesFiles: [.hidden/l40" + secret + "]\n", "app/chart/Chart.yaml": chart}, func() map[string]string {
			l, _ := chain("app/.hidden", 40)
			return l
		}(), "app/.hidden/l40"},
		{"kustomize dir link", map[string]string{"app/fleet.yaml": "kustomize:\n  dir: k\n", "app/cm.yaml": cm}, map[string]string{"app/.k": filepath.Dir(secret), "app/k": ".k"}, "app/k"},
		{"chart dir link", map[string]string{"app/fleet.yaml": "helm:\n  chart: ./c\n"}, map[string]string{"app/.c": filepath.Dir(secret), "app/c": ".c"}, "app/c"},
		{"fleetignore link", map[string]string{"app/cm.yaml": cm}, map[string]string{"app/.fleetignore": secret}, "app/.fleetignore"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, tc.files)
			symlinks(t, root, tc.links)
			for _, mode := range []string{"repository", "directory"} {
				opts := Options{Name: "set", Namespace: "ns"}
				if mode == "repository" {
					opts.BaseDir = root
				}
				bundles, err := Read(context.Background(), opts, filepath.Join(root, "app"))
				if err == nil {
					t.Fatalf("%s: read succeeded (marker leaked: %v)", mode, containsMarker(bundles, marker))
				}
				msg := err.Error()
				refused := strings.Contains(msg, "leads outside") || strings.Contains(msg, "too many levels of symbolic links")
				if !strings.Contains(msg, tc.want) || !refused || strings.Contains(msg, marker) {
					t.Fatalf("%s: error does not name %s as a link leaving the root: %v", mode, tc.want, err)
				}
			}
		})
	}
}

// TestReadFollowsLinksInsideTheRoot: links that stay inside the root
// (files, a shared values file, a chart directory reached through a link,
// a path that is itself a link) keep working, as Fleet repositories use
// them.
func TestReadFollowsLinksInsideTheRoot(t *testing.T) {
	root := writeTree(t, map[string]string{
		"shared/cm.yaml":                 cm,
		"shared/values.yaml":             "replicas: 3\n",
		"shared/chart/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"shared/chart/templates/cm.yaml": "kind: ConfigMap\n",
		"real/fleet.yaml":                "helm:\n  chart: ./chart\n  valuesFiles: [values.yaml]\n",
	})
	symlinks(t, root, map[string]string{
		"real/cm.yaml":     "../shared/cm.yaml",
		"real/values.yaml": "../shared/values.yaml",
		"real/chart":       "../shared/chart", // a chart reached through a link is not walked, so it is not in the bundle...
		"app":              "real",
	})
	bundles, err := Read(context.Background(), Options{Name: "set", Namespace: "ns", BaseDir: root}, filepath.Join(root, "app"))
	// ...and the reader says so rather than deploying half a chart.
	if err == nil || !strings.Contains(err.Error(), "excluded from the bundle") {
		t.Fatalf("chart through a directory link: %v", err)
	}
	if err := os.Remove(filepath.Join(root, "real/chart")); err != nil {
		t.Fatal(err)
	}
	symlinks(t, root, map[string]string{"real/chart/Chart.yaml": "../../shared/chart/Chart.yaml", "real/chart/templates/cm.yaml": "../../../shared/chart/templates/cm.yaml"})
	bundles, err = Read(context.Background(), Options{Name: "set", Namespace: "ns", BaseDir: root}, filepath.Join(root, "app"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bundles) != 1 {
		t.Fatalf("%d bundles", len(bundles))
	}
	got := map[string]string{}
	for _, r := range bundles[0].Manifest.Resources {
		got[r.Name] = r.Content
	}
	if got["cm.yaml"] != cm || got["chart/Chart.yaml"] == "" || got["chart/templates/cm.yaml"] != "kind: ConfigMap\n" {
		t.Fatalf("files through in-root links: %v", got)
	}
	if v := values(t, bundles[0].Bundle.Spec.Helm); v["replicas"] != float64(3) {
		t.Fatalf("values file through an in-root link: %v", v)
	}
}

// TestReadLimits: a file, a fleet.yaml or a set of bundles over its limit
// is an error naming the file and the limit; nothing larger is read.
func TestReadLimits(t *testing.T) {
	big := strings.Repeat("# padding\n", 200)
	cases := []struct {
		name   string
		files  map[string]string
		limits Limits
		want   string
	}{
		{"one file", map[string]string{"app/big.yaml": big}, Limits{MaxFileBytes: 1000}, "app/big.yaml: larger than the limit of 1000 bytes for one file"},
		{"fleet.yaml", map[string]string{"app/fleet.yaml": big, "app/cm.yaml": cm}, Limits{MaxFleetYAMLBytes: 1 << 10}, "app/fleet.yaml: larger than the limit of 1 KiB for a fleet.yaml"},
		{"values file", map[string]string{"app/fleet.yaml": "helm:\n  chart: ./chart\n  valuesFiles: [.v.yaml]\n", "app/.v.yaml": big, "app/chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"}, Limits{MaxFileBytes: 1000}, "app/.v.yaml: larger than the limit"},
		{"total", map[string]string{"app/a.yaml": big, "app/b.yaml": big, "app/c.yaml": big}, Limits{MaxTotalBytes: 4000}, "exceed the limit of 4000 bytes in total"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, tc.files)
			_, err := Read(context.Background(), Options{Name: "set", Namespace: "ns", Limits: tc.limits}, filepath.Join(root, "app"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// The same tree within the limits reads.
	root := writeTree(t, map[string]string{"app/a.yaml": big, "app/b.yaml": big})
	if _, err := Read(context.Background(), Options{Name: "set", Namespace: "ns", Limits: Limits{MaxFileBytes: 2000, MaxTotalBytes: 4000}}, filepath.Join(root, "app")); err != nil {
		t.Fatal(err)
	}
}

// TestReadRefusesPathsOutsideTheRoot: a path given to Read that is (or
// goes through) a link out of the repository is refused, as is one that is
// not below Root at all.
func TestReadRefusesPathsOutsideTheRoot(t *testing.T) {
	secret, _ := canary(t)
	root := writeTree(t, map[string]string{"app/cm.yaml": cm})
	symlinks(t, root, map[string]string{"out": filepath.Dir(secret)})
	_, err := Read(context.Background(), Options{Name: "set", Namespace: "ns", BaseDir: root}, filepath.Join(root, "out"))
	if err == nil || !strings.Contains(err.Error(), "leads outside the repository") {
		t.Fatalf("path through a link out of the repository: %v", err)
	}
	_, err = Read(context.Background(), Options{Name: "set", Namespace: "ns", Root: filepath.Join(root, "app")}, filepath.Dir(secret))
	if err == nil || !strings.Contains(err.Error(), "is outside") {
		t.Fatalf("path outside Root: %v", err)
	}
}

// TestIsDirBeneath: a GitRepo path glob's match is a directory only
// through links inside the repository; one leaving it is an error, never a
// stat of the host.
func TestIsDirBeneath(t *testing.T) {
	root := writeTree(t, map[string]string{"d/cm.yaml": cm, "f": "x"})
	symlinks(t, root, map[string]string{"in": "d", "out": "/etc", "gone": "../../nope", "broken": "nope"})
	for name, want := range map[string]string{"d": "dir", "in": "dir", "f": "no", "broken": "no", "out": "error", "gone": "error"} {
		isDir, err := IsDirBeneath(root, filepath.Join(root, name))
		got := "no"
		switch {
		case err != nil:
			got = "error"
		case isDir:
			got = "dir"
		}
		if got != want {
			t.Errorf("%s: %s (%v), want %s", name, got, err, want)
		}
	}
}

// TestReadDoesNotBlockOnFIFOs: a fleet.yaml or a linked file that is a
// FIFO (a local directory can hold one) is an error or skipped, never a
// read that waits forever for a writer.
func TestReadDoesNotBlockOnFIFOs(t *testing.T) {
	root := writeTree(t, map[string]string{"app/cm.yaml": cm})
	if err := syscall.Mkfifo(filepath.Join(root, "app", "fleet.yaml"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Read(context.Background(), Options{Name: "set", Namespace: "ns"}, filepath.Join(root, "app"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "fleet.yaml: not a regular file") {
			t.Fatalf("fleet.yaml FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read blocked on a FIFO")
	}
}
