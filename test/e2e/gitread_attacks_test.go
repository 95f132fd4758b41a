package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/test/gitserver"
	"github.com/edgefleet/edgefleet/test/harness"
)

// climbLinks is a chain of links whose text looks local (what the old
// textual filter let through) but which the kernel resolves upwards:
// l0 -> ., l1 -> l0/.., ..., ln is n-1 levels above their directory.
func climbLinks(n int) []gitserver.Entry {
	out := []gitserver.Entry{gitserver.Link("l0", ".")}
	for i := 1; i <= n; i++ {
		out = append(out, gitserver.Link("l"+strconv.Itoa(i), "l"+strconv.Itoa(i-1)+"/.."))
	}
	return out
}

func randomMarker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "CANARY-" + hex.EncodeToString(b)
}

// findFile returns the first file named name below dir.
func findFile(t *testing.T, dir, name string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name && found == "" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no %s below %s", name, dir)
	}
	return found
}

// leaked lists what, among every Bundle of the namespace and every Content
// they reference, holds one of secrets.
func leaked(ctx context.Context, t *testing.T, c client.Client, secrets ...string) []string {
	t.Helper()
	var bundles fleetv1.BundleList
	if err := c.List(ctx, &bundles, client.InNamespace(fleetNS)); err != nil {
		t.Fatal(err)
	}
	var out []string
	holds := func(what string, data []byte) {
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				out = append(out, what)
			}
		}
	}
	for _, b := range bundles.Items {
		spec, _ := json.Marshal(b.Spec)
		holds("Bundle "+b.Name, spec)
		if b.Spec.ContentsID == "" {
			continue
		}
		m, err := content.Load(ctx, c, b.Spec.ContentsID)
		if err != nil {
			t.Fatalf("loading content of %s: %v", b.Name, err)
		}
		for _, r := range m.Resources {
			data, err := bundlereader.Decoded(r)
			if err != nil {
				t.Fatal(err)
			}
			holds("Content "+b.Spec.ContentsID+" file "+r.Name, data)
		}
	}
	return out
}

// TestGitRepoCannotReadOrWriteOutsideTheCheckout: a git committer's
// symbolic links cannot make the manager read a file of its host into a
// Bundle — chains of local-looking links, absolute links (to the manager's
// CA key), links out of a chart's templates, to directories and to /proc —
// nor write outside the checkout with a forged tree. Each refusal is in the
// GitRepo's status naming the path; links inside the repository keep
// working; `edgefleet apply` of a local directory is confined the same way.
func TestGitRepoCannotReadOrWriteOutsideTheCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	t.Parallel()
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{})
	c := m.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}

	// Secrets on the manager's host, outside any checkout.
	marker := randomMarker(t)
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary.yaml")
	valuesCanary := filepath.Join(outside, "values.yaml")
	for p, data := range map[string]string{canary: "apiVersion: v1\nkind: Secret\nmetadata: {name: leak}\nstringData: {k: " + marker + "}\n", valuesCanary: "leak: " + marker + "\n"} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey := findFile(t, m.DataDir, "ca.key")
	caKeyPEM, err := os.ReadFile(caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := strings.Split(strings.TrimSpace(string(caKeyPEM)), "\n")[1]

	root := t.TempDir()
	srv := gitserver.ServeHTTP(t, root, "", "")
	cm := func(name string) gitserver.Entry {
		return gitserver.File("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\ndata:\n  a: b\n")
	}
	chart := gitserver.File("Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
	// .c/l20 is far above the checkout, i.e. "/" (climbs stop there).
	up := ".c/l20"
	attacks := gitserver.NewRepo(t, root, "attacks.git")
	attackCommit := attacks.CommitTree(t, "main", "escapes", []gitserver.Entry{
		gitserver.Dir(".c", climbLinks(20)...),
		gitserver.Dir("absolute", gitserver.Link("ca.key", caKey), cm("absolute")),
		gitserver.Dir("chain", cm("chain"), gitserver.Link("secret.yaml", "../"+up+canary)),
		gitserver.Dir("chart",
			gitserver.Dir("chart", chart, gitserver.Dir("templates", gitserver.File("cm.yaml", "kind: ConfigMap\n"), gitserver.Link("x", "../../../.."))),
			gitserver.File("fleet.yaml", "helm:\n  chart: ./chart\n")),
		gitserver.Dir("dirlink", cm("dirlink"), gitserver.Link("etc", "/etc")),
		gitserver.Link("outdir", "/etc"),
		gitserver.Dir("proc", cm("proc"), gitserver.Link("environ", "/proc/self/environ")),
		gitserver.Dir("shortchain", append([]gitserver.Entry{cm("shortchain")}, climbLinks(3)...)...),
		gitserver.Dir("values",
			gitserver.Link(".values.yaml", "../"+up+valuesCanary),
			gitserver.Dir("chart", chart),
			gitserver.File("fleet.yaml", "helm:\n  chart: ./chart\n  valuesFiles: [.values.yaml]\n")),
	})
	fine := gitserver.NewRepo(t, root, "fine.git")
	fineCommit := fine.CommitTree(t, "main", "links inside", []gitserver.Entry{
		gitserver.Dir("ok",
			gitserver.Dir("chart", gitserver.Link("Chart.yaml", "../../shared/Chart.yaml")),
			gitserver.Link("cm.yaml", "../shared/cm.yaml"),
			gitserver.File("fleet.yaml", "helm:\n  chart: ./chart\n  valuesFiles: [values.yaml]\n"),
			gitserver.Link("values.yaml", "../shared/values.yaml")),
		gitserver.Dir("shared", chart, cm("shared"), gitserver.File("values.yaml", "replicas: 3\n")),
	})
	forged := gitserver.NewRepo(t, root, "forged.git")
	pwnedDir := t.TempDir()
	forged.CommitTree(t, "main", "write through a link", []gitserver.Entry{
		gitserver.Dir(".c", climbLinks(20)...),
		gitserver.Link("a", up+pwnedDir),
		gitserver.Dir("a", gitserver.File("pwned", "written by a git committer\n")),
	})

	paths := []string{"absolute", "chain", "chart", "dirlink", "outdir", "proc", "shortchain", "values"}
	gitRepo := func(name, repo string, paths ...string) *fleetv1.GitRepo {
		return &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: name}, Spec: fleetv1.GitRepoSpec{
			Repo: srv.URL + "/" + repo, Branch: "main", Paths: paths, PollingInterval: &metav1.Duration{Duration: time.Second}, Targets: everyCluster}}
	}
	createAll(ctx, t, c, gitRepo("attacks", "attacks.git", paths...), gitRepo("fine", "fine.git", "ok"), gitRepo("forged", "forged.git"))

	t.Run("links out of the checkout are refused in status", func(t *testing.T) {
		msg := waitCondition(ctx, t, c, "attacks", "RenderError")
		t.Logf("RenderError: %s", msg)
		for _, want := range []string{"absolute/ca.key", "chain/secret.yaml", "chart/chart/templates/x", "dirlink/etc", "outdir: a symbolic link", "proc/environ", "shortchain/l2", "values/.values.yaml"} {
			if !strings.Contains(msg, want) {
				t.Errorf("status does not name %s", want)
			}
		}
		if !strings.Contains(msg, "leads outside the repository") {
			t.Error("status does not say the links lead outside the repository")
		}
		if strings.Contains(msg, marker) || strings.Contains(msg, keyLine) {
			t.Error("status shows a secret")
		}
		if gr := getGitRepo(ctx, t, c, "attacks"); gr.Status.Commit != attackCommit {
			t.Errorf("status.commit = %q, want %s", gr.Status.Commit, attackCommit)
		}
	})

	t.Run("links inside the repository keep working", func(t *testing.T) {
		var b fleetv1.Bundle
		waitFor(t, time.Minute, "fine-ok bundle at the commit", func() bool {
			return c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "fine-ok"}, &b) == nil && b.Labels[fleetv1.CommitLabel] == fineCommit && b.Spec.ContentsID != ""
		})
		m, err := content.Load(ctx, c, b.Spec.ContentsID)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]string{}
		for _, r := range m.Resources {
			data, _ := bundlereader.Decoded(r)
			files[r.Name] = string(data)
		}
		if !strings.Contains(files["cm.yaml"], "name: shared") || !strings.Contains(files["chart/Chart.yaml"], "name: c") {
			t.Fatalf("files through in-repository links missing: %v", files)
		}
		if b.Spec.Helm == nil || b.Spec.Helm.Values == nil || !strings.Contains(string(b.Spec.Helm.Values.Raw), `"replicas":3`) {
			t.Fatalf("values file through an in-repository link not merged: %+v", b.Spec.Helm)
		}
	})

	t.Run("a forged tree cannot write outside the checkout", func(t *testing.T) {
		msg := waitCondition(ctx, t, c, "forged", "UnsafeCommit")
		t.Logf("UnsafeCommit: %s", msg)
		if !strings.Contains(msg, "a/pwned") {
			t.Errorf("status does not name a/pwned: %s", msg)
		}
		if _, err := os.Stat(filepath.Join(pwnedDir, "pwned")); err == nil {
			t.Fatal("the manager wrote a file outside the checkout")
		}
	})

	t.Run("edgefleet apply of a local directory is confined too", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n"})
		if err := os.Symlink(canary, filepath.Join(dir, "secret.yaml")); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(harness.EdgefleetBinary(t), "apply", "-n", fleetNS, "--kubeconfig", m.Kubeconfig, "local", dir).CombinedOutput()
		if err == nil || !strings.Contains(string(out), filepath.Join(dir, "secret.yaml")) || !strings.Contains(string(out), "leads outside") {
			t.Fatalf("apply: err=%v, output does not refuse secret.yaml:\n%s", err, out)
		}
		t.Logf("apply: %s", strings.TrimSpace(string(out)))
		var list fleetv1.BundleList
		if err := c.List(ctx, &list, client.InNamespace(fleetNS), client.MatchingLabels{fleetv1.BundleSetLabel: "local"}); err != nil || len(list.Items) != 0 {
			t.Fatalf("refused apply wrote %d bundles (%v)", len(list.Items), err)
		}
	})

	// Whatever was written, no Bundle or Content holds a host secret.
	if where := leaked(ctx, t, c, marker, keyLine); len(where) > 0 {
		t.Fatalf("host secrets leaked into: %s", strings.Join(where, ", "))
	}
}
