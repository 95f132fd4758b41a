package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/internal/agent/upgradeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

// k3sUpgradeBundle is SUC's documented k3s example (server plan, then agent
// plan) as a bundle for the clusters labelled env=prod, at version.
func k3sUpgradeBundle(version string) map[string]string {
	return map[string]string{
		"fleet.yaml": "defaultNamespace: system-upgrade\ntargets:\n- clusterSelector:\n    matchLabels: {env: prod}\n",
		"namespace.yaml": `apiVersion: v1
kind: Namespace
metadata:
  name: system-upgrade
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: system-upgrade
  namespace: system-upgrade
`,
		"plans.yaml": `apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: k3s-server
  namespace: system-upgrade
spec:
  concurrency: 1
  cordon: true
  nodeSelector:
    matchExpressions:
    - {key: node-role.kubernetes.io/control-plane, operator: In, values: ["true"]}
  serviceAccountName: system-upgrade
  upgrade:
    image: rancher/k3s-upgrade
  version: ` + version + `
---
apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: k3s-agent
  namespace: system-upgrade
spec:
  concurrency: 2
  nodeSelector:
    matchExpressions:
    - {key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}
  prepare:
    args: [prepare, k3s-server]
    image: rancher/k3s-upgrade
  serviceAccountName: system-upgrade
  drain:
    force: true
    skipWaitForDeleteTimeout: 60
  upgrade:
    image: rancher/k3s-upgrade
  version: ` + version + `
`,
	}
}

// TestUpgradePlanThroughABundle is the cluster upgrade path end to end: a
// bundle of SUC-style k3s upgrade Plans applied on the manager reaches only
// the clusters it targets, their agents run the Plans on the fake nodes
// (Job per node), the Bundle is Ready only once every node is upgraded, and
// a new version in the bundle upgrades the nodes again.
func TestUpgradePlanThroughABundle(t *testing.T) {
	ctx := context.Background()
	m, err := harness.LaunchManager(t, harness.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 3
	clusters := harness.StartClusters(t, 2, harness.ClusterOptions{Nodes: nodes})
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
	env := &fleetEnv{m: m, clusters: clusters}
	agentCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	downstream := make([]client.Client, len(clusters))
	for i, cl := range clusters {
		name := fmt.Sprintf("edge-%d", i)
		env.names = append(env.names, name)
		labels := map[string]string{"env": []string{"prod", "dev"}[i]}
		fc := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fleetNS, Labels: labels}}
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
		if downstream[i], err = client.New(cl.RESTConfig(), client.Options{Scheme: upgradeplan.Scheme()}); err != nil {
			t.Fatal(err)
		}
	}
	prod, dev := downstream[0], downstream[1]
	// The first fake node is the control plane, as in k3s.
	waitFor(t, 2*time.Minute, "fake nodes", func() bool {
		var l corev1.NodeList
		return prod.List(ctx, &l) == nil && len(l.Items) == nodes
	})
	n := &corev1.Node{}
	if err := prod.Get(ctx, client.ObjectKey{Name: "kwok-node-0"}, n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Labels["node-role.kubernetes.io/control-plane"] = "true"
	if err := prod.Patch(ctx, n, patch); err != nil {
		t.Fatal(err)
	}

	upgraded := func(version string) {
		t.Helper()
		bundle := env.applyDir(t, "k3s-upgrade", k3sUpgradeBundle(version))
		waitFor(t, 3*time.Minute, "bundle Ready with every node at "+version, func() bool {
			if !bundleReady(ctx, m.Client, bundle, 1) {
				return false
			}
			for _, plan := range []string{"k3s-server", "k3s-agent"} {
				p := &upgradev1.Plan{}
				if prod.Get(ctx, client.ObjectKey{Namespace: "system-upgrade", Name: plan}, p) != nil || p.Status.LatestVersion != version || !meta.IsStatusConditionTrue(p.Status.Conditions, "Ready") {
					return false
				}
			}
			return true
		})
		var l corev1.NodeList
		if err := prod.List(ctx, &l); err != nil {
			t.Fatal(err)
		}
		for _, n := range l.Items {
			plan := "k3s-agent"
			if n.Labels["node-role.kubernetes.io/control-plane"] == "true" {
				plan = "k3s-server"
			}
			p := &upgradev1.Plan{}
			if err := prod.Get(ctx, client.ObjectKey{Namespace: "system-upgrade", Name: plan}, p); err != nil {
				t.Fatal(err)
			}
			if n.Labels[upgradeplan.NodeLabel(plan)] != p.Status.LatestHash || n.Spec.Unschedulable {
				t.Errorf("node %s: %s=%q (want %s), unschedulable %v", n.Name, upgradeplan.NodeLabel(plan), n.Labels[upgradeplan.NodeLabel(plan)], p.Status.LatestHash, n.Spec.Unschedulable)
			}
		}
	}
	upgraded("v1.30.2+k3s1")
	// The dev cluster is not targeted: its agent installed the CRD, but no
	// Plan reached it.
	var plans upgradev1.PlanList
	if err := dev.List(ctx, &plans); err != nil || len(plans.Items) != 0 {
		t.Errorf("the untargeted cluster has %d Plans (%v)", len(plans.Items), err)
	}
	if err := dev.Get(ctx, client.ObjectKey{Name: "system-upgrade"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("the untargeted cluster got the bundle's namespace: %v", err)
	}
	upgraded("v1.31.0+k3s1")

	// A paused bundle holds the new version back from the cluster: the
	// nodes stay at the old hash until it is unpaused.
	paused := k3sUpgradeBundle("v1.32.0+k3s1")
	paused["fleet.yaml"] = "paused: true\n" + paused["fleet.yaml"]
	env.applyDir(t, "k3s-upgrade", paused)
	time.Sleep(5 * time.Second)
	p := &upgradev1.Plan{}
	if err := prod.Get(ctx, client.ObjectKey{Namespace: "system-upgrade", Name: "k3s-server"}, p); err != nil || p.Spec.Version != "v1.31.0+k3s1" {
		t.Fatalf("plan version %q (%v) while the bundle is paused; want v1.31.0+k3s1 kept", p.Spec.Version, err)
	}
	upgraded("v1.32.0+k3s1")
}
