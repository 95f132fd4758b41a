package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

// simulateFormationMachines plays the node agents of the machines in ns
// (simulated: no edgefleet-node runs): each new plan in a plan Secret is
// reported applied with a healthy kubelet probe, as the node agent reports
// it. The "formed" cluster itself is a dev cluster whose kwok nodes carry
// the machines' names, joined to the fleet by a real agent with the
// cluster's join token, so node operations go through the real tunnel.
func simulateFormationMachines(ctx context.Context, c client.Client, ns string) {
	applied := map[string]string{}
	for ctx.Err() == nil {
		var list corev1.SecretList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err == nil {
			for _, s := range list.Items {
				raw, ok := s.Data[nodeplan.SecretKey]
				if !ok || s.Type != machineregistration.PlanSecret(&machinesv1.MachineInventory{}).Type {
					continue
				}
				sum := nodeplan.Checksum(raw)
				if applied[s.Name] == sum {
					continue
				}
				var inv machinesv1.MachineInventory
				if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: s.Name}, &inv) != nil {
					continue
				}
				inv.Status.Plan.AppliedChecksum = sum
				inv.Status.Plan.Probes = []machinesv1.PlanProbeStatus{{Name: render.ProbeKubelet, Healthy: true, SuccessCount: 1}}
				if c.Status().Update(ctx, &inv) == nil {
					applied[s.Name] = sum
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestFormationNodesThroughTheTunnel: a ProvisionedCluster formed from
// three simulated machines joins the fleet through its join token (a real
// agent in a dev cluster with kwok nodes named as the machines); NodeReady
// then follows the Nodes read through the tunnel, and scaling the workers
// down cordons and drains the released machine's node (its pod is
// evicted) and deletes the Node, and a version upgrade drains each node
// before its machine moves and uncordons it after, all through the tunnel;
// so does an OS rollout (ManagedOSImage with drain) over the worker.
func TestFormationNodesThroughTheTunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a manager and a cluster")
	}
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{})
	down := harness.StartClusters(t, 1, harness.ClusterOptions{Nodes: 3})[0]
	c := m.Client
	ns := "formation"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for i, role := range []string{"server", "worker", "worker"} {
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("kwok-node-%d", i), Labels: map[string]string{"role": role}}}
		if err := c.Create(ctx, inv); err != nil {
			t.Fatal(err)
		}
		s := machineregistration.PlanSecret(inv)
		if err := machineregistration.OwnFor(inv, s, c.Scheme()); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("10.9.0.%d", 10+i)
		waitFor(t, 10*time.Second, "machine "+inv.Name+" registered", func() bool {
			if c.Get(ctx, client.ObjectKeyFromObject(inv), inv) != nil {
				return false
			}
			inv.Status.Network = machinesv1.NetworkStatus{PrimaryAddress: addr, Addresses: []string{addr}}
			meta.SetStatusCondition(&inv.Status.Conditions, metav1.Condition{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: "Registered", Message: "simulated"})
			return c.Status().Update(ctx, inv) == nil
		})
	}
	simCtx, stop := context.WithCancel(ctx)
	simDone := make(chan struct{})
	go func() { defer close(simDone); simulateFormationMachines(simCtx, c, ns) }()
	t.Cleanup(func() { stop(); <-simDone })
	waitFor(t, 60*time.Second, "the machines Ready", func() bool {
		var invs machinesv1.MachineInventoryList
		if c.List(ctx, &invs, client.InNamespace(ns)) != nil {
			return false
		}
		for _, inv := range invs.Items {
			if !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) {
				return false
			}
		}
		return len(invs.Items) == 3
	})

	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroEdgefleet, Version: "v1.37.1", Binaries: &provisioningv1.Binaries{Image: "registry.example.com/kube:v1.37.1"},
		ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}}},
		Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: provisioningv1.MachinePool{Replicas: 2,
			MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}}},
		Fleet:           provisioningv1.FleetSpec{Labels: map[string]string{"site": "edge"}},
		RolloutStrategy: provisioningv1.RolloutStrategy{DrainTimeout: &metav1.Duration{Duration: time.Minute}},
	}}
	if err := c.Create(ctx, pc); err != nil {
		t.Fatal(err)
	}

	// The init server applies the import manifest: here its agent runs in
	// this test with the manifest's token, and the formation RBAC the
	// manifest carries is applied to the dev cluster.
	var tok corev1.Secret
	waitFor(t, 60*time.Second, "the cluster's join token", func() bool {
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: clusterregistration.TokenSecretName("edge-join")}, &tok) == nil
	})
	var pki corev1.Secret
	waitFor(t, 60*time.Second, "the import manifest", func() bool {
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edge-pki"}, &pki) == nil && len(pki.Data["import-manifest.yaml"]) > 0
	})
	manifest := string(pki.Data["import-manifest.yaml"])
	if !strings.Contains(manifest, string(tok.Data[clusterjoin.KeyToken])) || !strings.Contains(manifest, nodeops.DownstreamUser()) {
		t.Fatalf("the import manifest lacks the join token or the formation RBAC:\n%s", manifest)
	}
	for _, doc := range strings.Split(string(nodeops.DownstreamRBAC()), "---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		kubectl(t, down.KubeconfigPath(), []byte(doc), "apply", "-f", "-")
	}
	startJoinAgent(t, down, join.Options{Server: m.URL, Token: string(tok.Data[clusterjoin.KeyToken]), CAChecksum: m.CAChecksum})

	waitFor(t, 120*time.Second, "the cluster Ready (fleet joined, nodes Ready through the tunnel)", func() bool {
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
			return false
		}
		return meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition)
	})
	cm := &provisioningv1.ClusterMachine{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kwok-node-1"}, cm); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(cm.Status.Conditions, provisioningv1.NodeReadyCondition); cond == nil || !strings.Contains(cond.Message, "node kwok-node-1 is Ready") {
		t.Fatalf("NodeReady of kwok-node-1 = %+v, want it read from the Node", cond)
	}

	// A pod on the worker that scale-down releases (the last by name).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"}, Spec: corev1.PodSpec{
		NodeName: "kwok-node-2", Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}}}
	if err := down.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the pod Running on kwok-node-2", func() bool {
		return down.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod) == nil && pod.Status.Phase == corev1.PodRunning
	})
	waitFor(t, 10*time.Second, "scaling workers 2 → 1", func() bool {
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
			return false
		}
		pc.Spec.Workers[0].Replicas = 1
		return c.Update(ctx, pc) == nil
	})
	waitFor(t, 90*time.Second, "kwok-node-2 drained and deleted, its machine released", func() bool {
		if err := down.Client.Get(ctx, client.ObjectKey{Name: "kwok-node-2"}, &corev1.Node{}); !apierrors.IsNotFound(err) {
			return false
		}
		if err := down.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			return false
		}
		var inv machinesv1.MachineInventory
		if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kwok-node-2"}, &inv) != nil {
			return false
		}
		return inv.Labels[provisioningv1.ClusterLabel] == ""
	})
	waitFor(t, 60*time.Second, "the cluster Ready with 1 worker", func() bool {
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
			return false
		}
		return meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) && pc.Status.WorkersReady == 1
	})

	// An upgrade drains each node before its machine moves and uncordons
	// it after: the pod on the worker is evicted, the nodes end schedulable.
	pod1 := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app-1"}, Spec: corev1.PodSpec{
		NodeName: "kwok-node-1", Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}}}
	if err := down.Client.Create(ctx, pod1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the pod Running on kwok-node-1", func() bool {
		return down.Client.Get(ctx, client.ObjectKeyFromObject(pod1), pod1) == nil && pod1.Status.Phase == corev1.PodRunning
	})
	waitFor(t, 10*time.Second, "upgrading to v1.37.2", func() bool {
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil {
			return false
		}
		pc.Spec.Version, pc.Spec.Binaries.Image = "v1.37.2", "registry.example.com/kube:v1.37.2"
		return c.Update(ctx, pc) == nil
	})
	waitFor(t, 90*time.Second, "every machine upgraded, drained nodes uncordoned", func() bool {
		if c.Get(ctx, client.ObjectKeyFromObject(pc), pc) != nil || pc.Status.ObservedGeneration != pc.Generation ||
			!meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) || pc.Status.ControlPlane.Updated != 1 || pc.Status.Workers[0].Updated != 1 {
			return false
		}
		for _, name := range []string{"kwok-node-0", "kwok-node-1"} {
			var node corev1.Node
			var cm provisioningv1.ClusterMachine
			if down.Client.Get(ctx, client.ObjectKey{Name: name}, &node) != nil || node.Spec.Unschedulable ||
				c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm) != nil || cm.Annotations[provisioningv1.DrainStartedAnnotation] != "" {
				return false
			}
		}
		return true
	})
	if err := down.Client.Get(ctx, client.ObjectKeyFromObject(pod1), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the pod on kwok-node-1 was not evicted by the upgrade's drain: %v", err)
	}

	// An OS rollout (ManagedOSImage with drain) over the cluster's worker:
	// its node is cordoned and drained through the tunnel (the same
	// downstream rights) before the upgrade plan is written, and
	// uncordoned once the machine reports the new OS.
	testOSRolloutDrainsThroughTheTunnel(t, c, down.Client, ns)
}

func testOSRolloutDrainsThroughTheTunnel(t *testing.T, c, down client.Client, ns string) {
	ctx := context.Background()
	const image = "registry.example.com/os:v2"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app-os"}, Spec: corev1.PodSpec{
		NodeName: "kwok-node-1", Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}}}
	if err := down.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the pod Running on kwok-node-1", func() bool {
		return down.Get(ctx, client.ObjectKeyFromObject(pod), pod) == nil && pod.Status.Phase == corev1.PodRunning
	})
	mosi := &machinesv1.ManagedOSImage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "os-v2"}, Spec: machinesv1.ManagedOSImageSpec{
		OSImage: image, Concurrency: 1, Drain: &upgradev1.DrainSpec{Force: true},
		Targets: machinesv1.ManagedOSImageTargets{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker", provisioningv1.ClusterLabel: "edge"}}}}}
	if err := c.Create(ctx, mosi); err != nil {
		t.Fatal(err)
	}
	var plan corev1.Secret
	waitFor(t, 60*time.Second, "kwok-node-1 cordoned, its pod evicted, then the upgrade plan written", func() bool {
		var node corev1.Node
		if down.Get(ctx, client.ObjectKey{Name: "kwok-node-1"}, &node) != nil || !node.Spec.Unschedulable {
			return false
		}
		if err := down.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			return false
		}
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kwok-node-1"}}
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: machineregistration.PlanName(inv)}, &plan) == nil &&
			strings.Contains(string(plan.Data[nodeplan.SecretKey]), "upgrade --image")
	})
	// The machine reports the new OS (what its node agent would do after
	// the reboot): the node is given back.
	waitFor(t, 10*time.Second, "kwok-node-1 reporting the new OS", func() bool {
		var inv machinesv1.MachineInventory
		if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kwok-node-1"}, &inv) != nil {
			return false
		}
		inv.Status.OS = machinesv1.OSStatus{Image: image, Version: "2", ActiveSlot: "b", BootedSlot: "b",
			LastUpgrade: &machinesv1.OSUpgradeStatus{Image: image, Slot: "b", Result: machinesv1.OSUpgradeSucceeded, Time: metav1.Now()}}
		return c.Status().Update(ctx, &inv) == nil
	})
	waitFor(t, 60*time.Second, "the rollout complete and kwok-node-1 uncordoned", func() bool {
		var node corev1.Node
		if c.Get(ctx, client.ObjectKeyFromObject(mosi), mosi) != nil || !meta.IsStatusConditionTrue(mosi.Status.Conditions, machinesv1.ReadyCondition) {
			return false
		}
		return down.Get(ctx, client.ObjectKey{Name: "kwok-node-1"}, &node) == nil && !node.Spec.Unschedulable
	})
}
