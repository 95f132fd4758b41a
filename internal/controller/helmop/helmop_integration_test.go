package helmop_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/controller/bundle"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	"github.com/edgefleet/edgefleet/internal/controller/helmop"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

const wait = 30 * time.Second

// packageChart packages a real chart with Helm and returns the archive.
func packageChart(t *testing.T, name, version string) []byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	files := map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: " + name + "\nversion: " + version + "\n",
		"values.yaml":       "greeting: hello\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting }}\n",
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
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// helmRepo serves a Helm repository over loopback HTTP; add publishes a
// version (index.yaml rewritten).
type helmRepo struct {
	t     *testing.T
	dir   string
	url   string
	index *repo.IndexFile
}

func newHelmRepo(t *testing.T) *helmRepo {
	dir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return &helmRepo{t: t, dir: dir, url: srv.URL, index: repo.NewIndexFile()}
}

func (h *helmRepo) add(name, version string) {
	h.t.Helper()
	data := packageChart(h.t, name, version)
	file := name + "-" + version + ".tgz"
	if err := os.WriteFile(filepath.Join(h.dir, file), data, 0o644); err != nil {
		h.t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := h.index.MustAdd(&chartv2.Metadata{APIVersion: "v2", Name: name, Version: version}, file, h.url+"/", "sha256:"+hex.EncodeToString(sum[:])); err != nil {
		h.t.Fatal(err)
	}
	h.index.SortEntries()
	if err := h.index.WriteFile(filepath.Join(h.dir, "index.yaml"), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func values(v map[string]any) *runtime.RawExtension {
	raw, _ := json.Marshal(v)
	return &runtime.RawExtension{Raw: raw}
}

// TestHelmOp: HelmOps from a loopback Helm repository and a loopback OCI
// registry become Bundles deployed to the clusters their targets select,
// with the resolved version and a GitRepo-like status; a version range
// picks up a new release at the next poll; bad specs and missing versions
// are Stalled with the reason; deleting a HelmOp deletes its Bundle.
func TestHelmOp(t *testing.T) {
	t.Setenv("HELM_CONFIG_HOME", t.TempDir())
	c := ctrltest.Start(t,
		func(m ctrl.Manager) error {
			return (&clusterctrl.Reconciler{StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
		},
		func(m ctrl.Manager) error {
			return (&bundle.Reconciler{StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
		},
		func(m ctrl.Manager) error {
			return (&helmop.Reconciler{StatusBatch: 100 * time.Millisecond, Network: &loopbackAllowed}).SetupWithManager(m)
		},
	)
	ctx := context.Background()
	const ns = "fleet-ops"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]string{"dev1": "dev", "dev2": "dev", "prod1": "prod"} {
		if err := c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"env": env}}}); err != nil {
			t.Fatal(err)
		}
	}
	dev := []fleetv1.BundleTarget{{Name: "dev", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}}}
	create := func(name string, spec fleetv1.HelmOpSpec) {
		t.Helper()
		if err := c.Create(ctx, &fleetv1.HelmOp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) (*fleetv1.HelmOp, error) {
		var op fleetv1.HelmOp
		return &op, c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &op)
	}
	bdOn := func(bundleName, cluster string) (*fleetv1.BundleDeployment, error) {
		var bd fleetv1.BundleDeployment
		err := c.Get(ctx, types.NamespacedName{Namespace: clusterns.Name(ns, cluster), Name: bundleName}, &bd)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return &bd, err
	}
	// deployedVersion waits for the HelmOp's deployment on each cluster to
	// carry version, and for none on the others.
	deployedVersion := func(name, version string, on, notOn []string) {
		t.Helper()
		ctrltest.Eventually(t, wait, func() error {
			for _, cl := range on {
				bd, err := bdOn(name, cl)
				if err != nil || bd == nil {
					return fmt.Errorf("no BundleDeployment %s on %s (%v)", name, cl, err)
				}
				if h := bd.Spec.Options.Helm; h == nil || h.Version != version {
					return fmt.Errorf("BundleDeployment %s on %s has helm %+v, want version %s", name, cl, h, version)
				}
			}
			for _, cl := range notOn {
				if bd, err := bdOn(name, cl); err != nil || bd != nil {
					return fmt.Errorf("BundleDeployment %s on %s, which no target selects (%v)", name, cl, err)
				}
			}
			op, err := get(name)
			if err != nil {
				return err
			}
			if op.Status.Version != version || op.Status.Summary.DesiredReady != int32(len(on)) {
				return fmt.Errorf("status version %q desiredReady %d, want %s and %d", op.Status.Version, op.Status.Summary.DesiredReady, version, len(on))
			}
			return nil
		})
	}
	stalled := func(name, reason, contains string) {
		t.Helper()
		ctrltest.Eventually(t, wait, func() error {
			op, err := get(name)
			if err != nil {
				return err
			}
			s := meta.FindStatusCondition(op.Status.Conditions, fleetv1.StalledCondition)
			if s == nil || s.Status != metav1.ConditionTrue || s.Reason != reason || !strings.Contains(s.Message, contains) {
				return fmt.Errorf("Stalled = %+v, want %s containing %q", s, reason, contains)
			}
			return nil
		})
	}

	hr := newHelmRepo(t)
	for _, v := range []string{"1.0.0", "1.2.0", "2.0.0"} {
		hr.add("web", v)
	}

	t.Run("chart from a Helm repository with a version range", func(t *testing.T) {
		create("web", fleetv1.HelmOpSpec{
			BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{
				DefaultNamespace: "web",
				Helm:             &fleetv1.HelmOptions{Repo: hr.url, Chart: "web", Version: "^1.0.0", ReleaseName: "web.v1", Values: values(map[string]any{"greeting": "hi"})},
			},
			Targets:         dev,
			Labels:          map[string]string{"team": "web", fleetv1.RepoNameLabel: "someone-elses-repo"},
			PollingInterval: &metav1.Duration{Duration: time.Second},
		})
		deployedVersion("web", "1.2.0", []string{"dev1", "dev2"}, []string{"prod1"})
		var b fleetv1.Bundle
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &b); err != nil {
			t.Fatal(err)
		}
		if _, ok := b.Labels[fleetv1.RepoNameLabel]; ok {
			t.Errorf("spec.labels set the reserved label %s on the bundle", fleetv1.RepoNameLabel)
		}
		if b.Labels["team"] != "web" || b.Labels[fleetv1.HelmOpNameLabel] != "web" || b.Spec.ContentsID == "" || b.Spec.Helm.ReleaseName != "web.v1" {
			t.Errorf("bundle labels %v contentsID %q releaseName %q", b.Labels, b.Spec.ContentsID, b.Spec.Helm.ReleaseName)
		}
	})

	t.Run("status is Ready once the agents report", func(t *testing.T) {
		for _, cl := range []string{"dev1", "dev2"} {
			ctrltest.Eventually(t, wait, func() error {
				bd, err := bdOn("web", cl)
				if err != nil || bd == nil {
					return fmt.Errorf("no deployment on %s: %v", cl, err)
				}
				bd.Status.AppliedDeploymentID, bd.Status.Ready, bd.Status.NonModified = bd.Spec.DeploymentID, true, true
				return c.Status().Update(ctx, bd)
			})
		}
		ctrltest.Eventually(t, wait, func() error {
			op, err := get("web")
			if err != nil {
				return err
			}
			r := meta.FindStatusCondition(op.Status.Conditions, fleetv1.ReadyCondition)
			if r == nil || r.Status != metav1.ConditionTrue || r.Message != "Chart version 1.2.0 is ready on 2/2 clusters" {
				return fmt.Errorf("Ready = %+v", r)
			}
			if op.Status.Display.ReadyBundleDeployments != "2/2" || op.Status.ReadyClusters != 2 {
				return fmt.Errorf("display %+v readyClusters %d", op.Status.Display, op.Status.ReadyClusters)
			}
			return nil
		})
	})

	t.Run("a new release in the range is picked up at the next poll", func(t *testing.T) {
		hr.add("web", "1.3.0")
		deployedVersion("web", "1.3.0", []string{"dev1", "dev2"}, []string{"prod1"})
	})

	t.Run("chart from an OCI registry", func(t *testing.T) {
		srv := httptest.NewServer(registry.New())
		t.Cleanup(srv.Close)
		host := strings.TrimPrefix(srv.URL, "http://")
		rc, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP(), helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "creds.json")))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"0.1.0", "0.2.0"} {
			if _, err := rc.Push(packageChart(t, "api", v), host+"/charts/api:"+v); err != nil {
				t.Fatal(err)
			}
		}
		spec := fleetv1.HelmOpSpec{
			BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Chart: "oci://" + host + "/charts/api", Version: "0.1.0"}},
			Targets:                 dev,
		}
		// Plain HTTP only when the HelmOp's Secret allows it.
		create("api", spec)
		ctrltest.Eventually(t, wait, func() error {
			op, err := get("api")
			if err != nil {
				return err
			}
			if r := meta.FindStatusCondition(op.Status.Conditions, fleetv1.ReadyCondition); r == nil || r.Reason != fleetv1.ChartFetchFailedReason {
				return fmt.Errorf("Ready = %+v, want ChartFetchFailed over HTTPS to a plain-HTTP registry", r)
			}
			return nil
		})
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "local-registry"},
			StringData: map[string]string{helmop.InsecurePlainHTTPKey: "true"}}); err != nil {
			t.Fatal(err)
		}
		op, err := get("api")
		if err != nil {
			t.Fatal(err)
		}
		op.Spec.HelmSecretName = "local-registry"
		if err := c.Update(ctx, op); err != nil {
			t.Fatal(err)
		}
		deployedVersion("api", "0.1.0", []string{"dev1", "dev2"}, []string{"prod1"})
	})

	t.Run("a version that does not exist is Stalled", func(t *testing.T) {
		create("missing", fleetv1.HelmOpSpec{BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{
			Helm: &fleetv1.HelmOptions{Repo: hr.url, Chart: "web", Version: "^9.0.0"}}})
		stalled("missing", fleetv1.ChartFetchFailedReason, `no version matches "^9.0.0"`)
	})

	t.Run("a local chart path is refused", func(t *testing.T) {
		create("local", fleetv1.HelmOpSpec{BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{
			Helm: &fleetv1.HelmOptions{Chart: "./chart"}}})
		stalled("local", fleetv1.InvalidSpecReason, "a HelmOp has no files of its own")
	})

	t.Run("deleting the HelmOp deletes its bundle", func(t *testing.T) {
		op, err := get("web")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, op); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, wait, func() error {
			var b fleetv1.Bundle
			if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &b); !apierrors.IsNotFound(err) {
				return fmt.Errorf("bundle web still there (%v)", err)
			}
			return nil
		})
	})
}

// loopbackAllowed lets the controller reach the test's chart repositories
// and registries on loopback (refused by default).
var loopbackAllowed = func() netguard.Policy {
	p := netguard.Default()
	p.Allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	return p
}()
