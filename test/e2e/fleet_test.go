package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/test/harness"
)

const fleetNS = "fleet-default"

// writeTree writes files (relative path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fleetRepo is a Fleet-format repository: raw YAML with drift correction, a
// local Helm chart with values templated per cluster and customized per env,
// and a Kustomize base with per-env overlays.
func fleetRepo(replicasProd string) map[string]string {
	return map[string]string{
		"raw/fleet.yaml": `defaultNamespace: demo-raw
correctDrift:
  enabled: true
targets:
- clusterSelector: {}
`,
		"raw/settings.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: gitops
`,
		"helm/fleet.yaml": `defaultNamespace: demo-helm
helm:
  chart: ./chart
  releaseName: web
  values:
    env: ${ .ClusterLabels.env }
    cluster: ${ .ClusterName }
    replicas: 1
targetCustomizations:
- name: prod
  clusterSelector:
    matchLabels: {env: prod}
  helm:
    values:
      replicas: ` + replicasProd + `
targets:
- clusterSelector: {}
`,
		"helm/chart/Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"helm/chart/values.yaml": "env: none\ncluster: none\nreplicas: 1\n",
		"helm/chart/templates/app.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: web-info
data:
  env: {{ .Values.env | quote }}
  cluster: {{ .Values.cluster | quote }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
`,
		"kustomize/fleet.yaml": `defaultNamespace: demo-kust
targetCustomizations:
- name: dev
  clusterSelector:
    matchLabels: {env: dev}
  kustomize:
    dir: overlays/dev
- name: prod
  clusterSelector:
    matchLabels: {env: prod}
  kustomize:
    dir: overlays/prod
targets:
- clusterSelector: {}
`,
		"kustomize/base/kustomization.yaml":          "resources:\n- tier.yaml\n",
		"kustomize/base/tier.yaml":                   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tier\ndata:\n  tier: base\n",
		"kustomize/overlays/dev/kustomization.yaml":  "resources:\n- ../../base\nnameSuffix: -dev\n",
		"kustomize/overlays/prod/kustomization.yaml": "resources:\n- ../../base\nnameSuffix: -prod\ncommonLabels:\n  tier: production\n",
	}
}

type fleetEnv struct {
	m        *harness.Manager
	clusters []*harness.Cluster
	names    []string
}

func (e *fleetEnv) apply(t *testing.T, name string, dirs ...string) (string, error) {
	t.Helper()
	args := append([]string{"apply", "-n", fleetNS, "--kubeconfig", e.m.Kubeconfig, name}, dirs...)
	out, err := exec.Command(harness.EdgefleetBinary(t), args...).CombinedOutput()
	return string(out), err
}

func configMap(ctx context.Context, c client.Client, ns, name string) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm)
	return &cm, err
}

func startFleet(t *testing.T, managerArgs ...string) *fleetEnv {
	t.Helper()
	ctx := context.Background()
	m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: managerArgs})
	if err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, 3, harness.ClusterOptions{Nodes: 1})
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	managerCfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	labels := []map[string]string{
		{"env": "dev", "region": "eu"},
		{"env": "prod", "region": "eu"},
		{"env": "prod", "region": "us"},
	}
	env := &fleetEnv{m: m, clusters: clusters}
	agentCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	for i, cl := range clusters {
		name := fmt.Sprintf("edge-%d", i)
		env.names = append(env.names, name)
		fc := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fleetNS, Labels: labels[i]}}
		if err := m.Client.Create(ctx, fc); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "cluster namespace of "+name, func() bool {
			return m.Client.Get(ctx, client.ObjectKeyFromObject(fc), fc) == nil && fc.Status.Namespace != ""
		})
		opts := agent.Options{
			ManagerConfig:    managerCfg,
			Namespace:        fc.Status.Namespace,
			ClusterName:      name,
			ClusterNamespace: fleetNS,
			DownstreamConfig: cl.RESTConfig(),
			MonitorInterval:  2 * time.Second,
		}
		go func() {
			if err := agent.Run(agentCtx, opts); err != nil && agentCtx.Err() == nil {
				t.Errorf("agent %s: %v", name, err)
			}
		}()
	}
	return env
}

func bundleReady(ctx context.Context, c client.Client, name string, want int32) bool {
	var b fleetv1.Bundle
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &b); err != nil {
		return false
	}
	return b.Status.DesiredReadyClusters == want && b.Status.ReadyClusters == want
}

// TestFleetRepositoryDeploysToLabelledClusters is the fleet core end to end:
// a Fleet-format directory applied with `edgefleet apply` reaches three real
// downstream clusters through their agents, customized per cluster.
func TestFleetRepositoryDeploysToLabelledClusters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := startFleet(t)
	repo := t.TempDir()
	writeTree(t, repo, fleetRepo("2"))

	if out, err := env.apply(t, "demo", repo); err != nil {
		t.Fatalf("edgefleet apply: %v\n%s", err, out)
	}
	bundles := []string{"demo-raw", "demo-helm", "demo-kustomize"}
	waitFor(t, 3*time.Minute, "all bundles 3/3 ready", func() bool {
		for _, b := range bundles {
			if !bundleReady(ctx, env.m.Client, b, 3) {
				return false
			}
		}
		return true
	})

	// The right objects with the right values in each cluster.
	for i, cl := range env.clusters {
		c := cl.Client
		if cm, err := configMap(ctx, c, "demo-raw", "settings"); err != nil || cm.Data["mode"] != "gitops" {
			t.Fatalf("%s: raw ConfigMap: %v %v", env.names[i], err, cm.Data)
		}
		info, err := configMap(ctx, c, "demo-helm", "web-info")
		if err != nil {
			t.Fatalf("%s: helm ConfigMap: %v", env.names[i], err)
		}
		wantEnv := map[int]string{0: "dev", 1: "prod", 2: "prod"}[i]
		if info.Data["env"] != wantEnv || info.Data["cluster"] != env.names[i] {
			t.Fatalf("%s: templated values %v, want env=%s cluster=%s", env.names[i], info.Data, wantEnv, env.names[i])
		}
		var dep appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKey{Namespace: "demo-helm", Name: "web"}, &dep); err != nil {
			t.Fatal(err)
		}
		wantReplicas := map[int]int32{0: 1, 1: 2, 2: 2}[i]
		if *dep.Spec.Replicas != wantReplicas || dep.Status.AvailableReplicas != wantReplicas {
			t.Fatalf("%s: deployment replicas %d available %d, want %d", env.names[i], *dep.Spec.Replicas, dep.Status.AvailableReplicas, wantReplicas)
		}
		suffix := map[int]string{0: "dev", 1: "prod", 2: "prod"}[i]
		if _, err := configMap(ctx, c, "demo-kust", "tier-"+suffix); err != nil {
			t.Fatalf("%s: kustomize overlay %s not applied: %v", env.names[i], suffix, err)
		}
		other := map[string]string{"dev": "prod", "prod": "dev"}[suffix]
		if _, err := configMap(ctx, c, "demo-kust", "tier-"+other); !apierrors.IsNotFound(err) {
			t.Fatalf("%s: wrong overlay %s applied too", env.names[i], other)
		}
	}
	var fc fleetv1.Cluster
	if err := env.m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: env.names[0]}, &fc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "cluster rollup 3/3", func() bool {
		_ = env.m.Client.Get(ctx, client.ObjectKeyFromObject(&fc), &fc)
		return fc.Status.Display.ReadyBundles == "3/3" && !fc.Status.Agent.LastSeen.IsZero()
	})

	// A change redeploys only what changed.
	rawBefore, _ := configMap(ctx, env.clusters[1].Client, "demo-raw", "settings")
	bdIDs := func(bundle string) map[string]string {
		var list fleetv1.BundleDeploymentList
		_ = env.m.Client.List(ctx, &list, client.MatchingLabels{fleetv1.BundleNameLabel: bundle})
		ids := map[string]string{}
		for _, bd := range list.Items {
			ids[bd.Namespace] = bd.Spec.DeploymentID
		}
		return ids
	}
	rawIDs := bdIDs("demo-raw")
	writeTree(t, repo, fleetRepo("3"))
	if out, err := env.apply(t, "demo", repo); err != nil {
		t.Fatalf("re-apply: %v\n%s", err, out)
	}
	waitFor(t, 2*time.Minute, "prod clusters at 3 replicas", func() bool {
		for _, i := range []int{1, 2} {
			var dep appsv1.Deployment
			if env.clusters[i].Client.Get(ctx, client.ObjectKey{Namespace: "demo-helm", Name: "web"}, &dep) != nil || *dep.Spec.Replicas != 3 {
				return false
			}
		}
		return true
	})
	if got := bdIDs("demo-raw"); fmt.Sprint(got) != fmt.Sprint(rawIDs) {
		t.Fatalf("unchanged raw bundle got new deployment IDs: %v -> %v", rawIDs, got)
	}
	rawAfter, _ := configMap(ctx, env.clusters[1].Client, "demo-raw", "settings")
	if rawAfter.ResourceVersion != rawBefore.ResourceVersion {
		t.Fatal("unchanged raw ConfigMap was re-applied")
	}
	var devDep appsv1.Deployment
	if err := env.clusters[0].Client.Get(ctx, client.ObjectKey{Namespace: "demo-helm", Name: "web"}, &devDep); err != nil || *devDep.Spec.Replicas != 1 {
		t.Fatalf("dev cluster changed by a prod-only customization: %v", err)
	}

	// Drift: an edit downstream is corrected (correctDrift on the raw bundle),
	// and shows as Modified where correction is off (kustomize bundle).
	cm, _ := configMap(ctx, env.clusters[0].Client, "demo-raw", "settings")
	cm.Data["mode"] = "hand-edited"
	if err := env.clusters[0].Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "drift corrected", func() bool {
		cm, err := configMap(ctx, env.clusters[0].Client, "demo-raw", "settings")
		return err == nil && cm.Data["mode"] == "gitops"
	})
	tier, _ := configMap(ctx, env.clusters[0].Client, "demo-kust", "tier-dev")
	tier.Data["tier"] = "edited"
	if err := env.clusters[0].Client.Update(ctx, tier); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "kustomize bundle Modified", func() bool {
		var b fleetv1.Bundle
		return env.m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "demo-kustomize"}, &b) == nil && b.Status.Summary.Modified == 1
	})

	// Removing a bundle from the directory prunes it and its resources.
	if err := os.RemoveAll(filepath.Join(repo, "raw")); err != nil {
		t.Fatal(err)
	}
	if out, err := env.apply(t, "demo", repo); err != nil || !strings.Contains(out, "pruned") {
		t.Fatalf("apply after removal: %v\n%s", err, out)
	}
	waitFor(t, time.Minute, "raw resources removed from every cluster", func() bool {
		for _, cl := range env.clusters {
			if _, err := configMap(ctx, cl.Client, "demo-raw", "settings"); !apierrors.IsNotFound(err) {
				return false
			}
		}
		return true
	})
}

// TestLargeBundleAndBadInput deploys a bundle with 20 MiB of manifests and
// checks that bad repositories are refused with file and line, changing nothing.
func TestLargeBundleAndBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := startFleet(t)

	big := t.TempDir()
	files := map[string]string{"fleet.yaml": "defaultNamespace: big\ntargets:\n- clusterName: edge-0\n"}
	for i := range 22 {
		b := make([]byte, 700<<10)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		files[fmt.Sprintf("cm-%02d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: blob-%02d\ndata:\n  blob: %s\n", i, base64.StdEncoding.EncodeToString(b))
	}
	writeTree(t, big, files)
	if out, err := env.apply(t, "big", big); err != nil {
		t.Fatalf("apply 20 MiB bundle: %v\n%s", err, out)
	}
	waitFor(t, 3*time.Minute, "20 MiB bundle ready on edge-0", func() bool { return bundleReady(ctx, env.m.Client, "big", 1) })
	for i := range 22 {
		if _, err := configMap(ctx, env.clusters[0].Client, "big", fmt.Sprintf("blob-%02d", i)); err != nil {
			t.Fatalf("blob-%02d missing downstream: %v", i, err)
		}
	}

	bad := []struct {
		name  string
		files map[string]string
		want  string
	}{
		// An unknown key is only a warning (Fleet ignores it); a wrong type fails.
		{"wrong type in fleet.yaml", map[string]string{"fleet.yaml": "defaultNamespace: x\npaused: maybe\n", "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}, "fleet.yaml:2"},
		{"invalid YAML", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n"}, "a.yaml:"},
		{"values not a map", map[string]string{"fleet.yaml": "helm:\n  chart: ./chart\n  values: [1, 2]\n", "chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"}, "fleet.yaml:3"},
		{"missing chart", map[string]string{"fleet.yaml": "helm:\n  chart: ./nope\n"}, "nope"},
		{"invalid selector", map[string]string{"fleet.yaml": "targets:\n- clusterSelector:\n    matchExpressions:\n    - {key: env, operator: Bogus}\n", "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}, "Bogus"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			out, err := env.apply(t, "bad", dir)
			if err == nil || !strings.Contains(out, tt.want) {
				t.Fatalf("apply: err=%v, output lacks %q:\n%s", err, tt.want, out)
			}
			var list fleetv1.BundleList
			if err := env.m.Client.List(ctx, &list, client.InNamespace(fleetNS), client.MatchingLabels{fleetv1.BundleSetLabel: "bad"}); err != nil || len(list.Items) != 0 {
				t.Fatalf("bad input left %d bundles behind (%v)", len(list.Items), err)
			}
		})
	}
}
