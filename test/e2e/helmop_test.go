package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	helmregistry "helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// helmOpChart packages a chart whose ConfigMap (named after the release)
// carries the chart version and the greeting value.
func helmOpChart(t *testing.T, name, version string) []byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	files := map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: " + name + "\nversion: " + version + "\n",
		"values.yaml":       "greeting: hello\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  version: {{ .Chart.Version | quote }}\n  greeting: {{ .Values.greeting | quote }}\n",
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
	ch, err := chartloader.LoadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestHelmOpDeploysChartsWithoutGit: HelmOps whose charts come from a Helm
// repository and an OCI registry (both on loopback) are installed by the
// agents of the clusters their targets select, as Helm releases with the
// HelmOp's values; the HelmOp reports the version and Ready n/n.
func TestHelmOpDeploysChartsWithoutGit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	repoDir := t.TempDir()
	repoSrv := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	t.Cleanup(repoSrv.Close)
	index := repo.NewIndexFile()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		data := helmOpChart(t, "web", v)
		file := "web-" + v + ".tgz"
		if err := os.WriteFile(filepath.Join(repoDir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if err := index.MustAdd(&chartv2.Metadata{APIVersion: "v2", Name: "web", Version: v}, file, repoSrv.URL+"/", "sha256:"+hex.EncodeToString(sum[:])); err != nil {
			t.Fatal(err)
		}
	}
	if err := index.WriteFile(filepath.Join(repoDir, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	regSrv := httptest.NewServer(registry.New())
	t.Cleanup(regSrv.Close)
	host := strings.TrimPrefix(regSrv.URL, "http://")
	rc, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP(), helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "creds.json")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Push(helmOpChart(t, "api", "0.3.0"), host+"/charts/api:0.3.0"); err != nil {
		t.Fatal(err)
	}

	env := startFleet(t)
	c := env.m.Client
	greeting, _ := json.Marshal(map[string]any{"greeting": "from-helmop"})
	createAll(ctx, t, c,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "local-registry"}, StringData: map[string]string{"insecurePlainHTTP": "true"}},
		&fleetv1.HelmOp{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "web"}, Spec: fleetv1.HelmOpSpec{
			BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{
				DefaultNamespace: "helmop-web",
				Helm:             &fleetv1.HelmOptions{Repo: repoSrv.URL, Chart: "web", Version: "~1.0", ReleaseName: "web", Values: &runtime.RawExtension{Raw: greeting}},
			},
			Targets: []fleetv1.BundleTarget{{Name: "all", ClusterSelector: &metav1.LabelSelector{}}},
		}},
		&fleetv1.HelmOp{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "api"}, Spec: fleetv1.HelmOpSpec{
			BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{
				DefaultNamespace: "helmop-api",
				Helm:             &fleetv1.HelmOptions{Chart: "oci://" + host + "/charts/api", Version: "0.3.0", ReleaseName: "api"},
			},
			Targets:        []fleetv1.BundleTarget{{Name: "prod", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}},
			HelmSecretName: "local-registry",
		}},
	)
	ready := func(name, version, message string) bool {
		var op fleetv1.HelmOp
		if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &op); err != nil {
			return false
		}
		r := meta.FindStatusCondition(op.Status.Conditions, fleetv1.ReadyCondition)
		return op.Status.Version == version && r != nil && r.Status == metav1.ConditionTrue && r.Message == message
	}
	cmIs := func(cl int, ns, name, version, greeting string) bool {
		cm, err := configMap(ctx, env.clusters[cl].Client, ns, name)
		return err == nil && cm.Data["version"] == version && cm.Data["greeting"] == greeting
	}
	start := time.Now()
	waitFor(t, 2*time.Minute, "HelmOp web (Helm repository, ~1.0 → 1.0.0) installed on 3 clusters", func() bool {
		return cmIs(0, "helmop-web", "web", "1.0.0", "from-helmop") && cmIs(1, "helmop-web", "web", "1.0.0", "from-helmop") &&
			cmIs(2, "helmop-web", "web", "1.0.0", "from-helmop") && ready("web", "1.0.0", "Chart version 1.0.0 is ready on 3/3 clusters")
	})
	t.Logf("HelmOp from a Helm repository: created → Ready on 3 clusters in %s", time.Since(start).Round(10*time.Millisecond))
	waitFor(t, 2*time.Minute, "HelmOp api (OCI) installed on the 2 prod clusters only", func() bool {
		return cmIs(1, "helmop-api", "api", "0.3.0", "hello") && cmIs(2, "helmop-api", "api", "0.3.0", "hello") &&
			ready("api", "0.3.0", "Chart version 0.3.0 is ready on 2/2 clusters")
	})
	if _, err := configMap(ctx, env.clusters[0].Client, "helmop-api", "api"); !apierrors.IsNotFound(err) {
		t.Fatalf("the dev cluster got the prod-only HelmOp: %v", err)
	}
	t.Logf("both HelmOps ready %s after creation", time.Since(start).Round(10*time.Millisecond))
}
