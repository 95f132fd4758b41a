package managedosimage_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
)

// sameCluster stands in for the tunnel to a formed cluster: the formed
// cluster's API is the test's own kube-apiserver (real Nodes, Pods,
// PodDisruptionBudgets and evictions; no kubelet runs, so evicted pods
// go away at once with drain.gracePeriod 0).
type sameCluster struct{ cs kubernetes.Interface }

func (s sameCluster) Clientset(context.Context, types.NamespacedName) (kubernetes.Interface, error) {
	return s.cs, nil
}

// formedCluster creates a ProvisionedCluster whose fleet Cluster is
// connected, as formation leaves it, and the Nodes of the machines.
func formedCluster(t *testing.T, c client.Client, ns, name string, nodes ...string) {
	t.Helper()
	ctx := context.Background()
	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroK3s, Version: "v1.33.5+k3s1", Paused: true,
		ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}}}}}
	if err := c.Create(ctx, pc); err != nil {
		t.Fatal(err)
	}
	pc.Status.FleetClusterRef = &provisioningv1.LocalObjectReference{Name: name + "-fleet"}
	if err := c.Status().Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	fc := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-fleet"}}
	if err := c.Create(ctx, fc); err != nil {
		t.Fatal(err)
	}
	fc.Status.Conditions = []metav1.Condition{{Type: fleetv1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: "Connected", Message: "simulated agent", LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(ctx, fc); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := c.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), node) })
	}
}

// budget creates a PodDisruptionBudget over the app=web pods that allows
// no disruption, with the status the disruption controller would write
// (none runs here).
func budget(t *testing.T, c client.Client, ns string, pods int32) *policyv1.PodDisruptionBudget {
	t.Helper()
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: policyv1.PodDisruptionBudgetSpec{
		MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if err := c.Create(context.Background(), pdb); err != nil {
		t.Fatal(err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 0, CurrentHealthy: pods, DesiredHealthy: pods, ExpectedPods: pods}
	if err := c.Status().Update(context.Background(), pdb); err != nil {
		t.Fatal(err)
	}
	return pdb
}

// podOn binds a pod to node (no scheduler, no kubelet: the API objects
// a drain reads and evicts).
func podOn(t *testing.T, c client.Client, ns, name, node, ownerKind string) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}
	// No controller-manager makes the namespace's default ServiceAccount,
	// which pod admission wants.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	if err := c.Create(context.Background(), sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if ownerKind != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: ownerKind, Name: name + "-owner", UID: types.UID(name + "-owner"), Controller: ptr.To(true)}}
	}
	if err := c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// Running and Ready, as a kubelet would report: the eviction API
	// ignores budgets for pods that are not running yet.
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func unschedulable(t *testing.T, c client.Client, node string) bool {
	t.Helper()
	var n corev1.Node
	if err := c.Get(context.Background(), client.ObjectKey{Name: node}, &n); err != nil {
		t.Fatal(err)
	}
	return n.Spec.Unschedulable
}

func podExists(t *testing.T, c client.Client, ns, name string) bool {
	t.Helper()
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.Pod{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func machineState(name string, state machinesv1.MachineUpgradeState, says ...string) func(*machinesv1.ManagedOSImage) error {
	return func(m *machinesv1.ManagedOSImage) error {
		i := slices.IndexFunc(m.Status.Machines, func(s machinesv1.MachineUpgradeStatus) bool { return s.Name == name })
		if i < 0 || m.Status.Machines[i].State != state {
			return fmt.Errorf("machines %+v, want %s %s", m.Status.Machines, name, state)
		}
		for _, s := range says {
			if !strings.Contains(m.Status.Machines[i].Message, s) {
				return fmt.Errorf("%s's message %q does not say %q", name, m.Status.Machines[i].Message, s)
			}
		}
		return nil
	}
}

func testCordonDrain(t *testing.T, c client.Client) {
	ctx := context.Background()
	node := map[string]string{"site": "shop", provisioningv1.ClusterLabel: "edge"}

	t.Run("nodes are cordoned, drained respecting a PodDisruptionBudget, upgraded one at a time and uncordoned", func(t *testing.T) {
		f := newNamedFleet(t, c, "drain", []string{"edge-0", "edge-1"}, node)
		formedCluster(t, c, f.ns, "edge", "edge-0", "edge-1")
		podOn(t, c, f.ns, "web-0", "edge-0", "ReplicaSet")
		podOn(t, c, f.ns, "agent-0", "edge-0", "DaemonSet")
		podOn(t, c, f.ns, "web-1", "edge-1", "ReplicaSet")
		pdb := budget(t, c, f.ns, 2)
		// Someone cordoned edge-1 for their own reasons: it stays cordoned.
		var n1 corev1.Node
		if err := c.Get(ctx, client.ObjectKey{Name: "edge-1"}, &n1); err != nil {
			t.Fatal(err)
		}
		n1.Spec.Unschedulable = true
		if err := c.Update(ctx, &n1); err != nil {
			t.Fatal(err)
		}
		m := mosi(f.ns, "v2", 1, map[string]string{"site": "shop"})
		m.Spec.Drain = &upgradev1.DrainSpec{GracePeriod: ptr.To[int32](0)}
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", machineState("edge-0", machinesv1.MachineUpgradeDraining, "pod drain/web-0 blocked by a PodDisruptionBudget (The disruption budget web needs 2 healthy pods and has 2 currently)", "set spec.drain.timeout"))
		if !unschedulable(t, c, "edge-0") {
			t.Error("edge-0 is draining but not cordoned")
		}
		if p := f.plan("edge-0"); p != ownPlan {
			t.Errorf("edge-0 got plan %q while its node still runs a pod the budget protects", p)
		}
		if got := f.upgrading(); len(got) != 0 {
			t.Errorf("upgrading %v while edge-0 drains", got)
		}
		// The budget lifted, the drain finishes: web-0 is evicted, the
		// DaemonSet pod stays, and edge-0 gets its upgrade plan.
		if err := c.Delete(ctx, pdb); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if got := strings.Join(f.upgrading(), ","); got != "edge-0" {
				return fmt.Errorf("upgrading %q, want edge-0", got)
			}
			return nil
		})
		if podExists(t, c, f.ns, "web-0") || !podExists(t, c, f.ns, "agent-0") || !podExists(t, c, f.ns, "web-1") {
			t.Errorf("after draining edge-0: web-0 %v (want evicted), agent-0 %v (DaemonSet, want kept), web-1 %v (other node, want kept)",
				podExists(t, c, f.ns, "web-0"), podExists(t, c, f.ns, "agent-0"), podExists(t, c, f.ns, "web-1"))
		}
		// edge-0 back with the new OS: uncordoned; then edge-1 (concurrency 1).
		f.succeed("edge-0")
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if unschedulable(t, c, "edge-0") {
				return fmt.Errorf("edge-0 still cordoned after its upgrade")
			}
			if got := strings.Join(f.upgrading(), ","); got != "edge-1" {
				return fmt.Errorf("upgrading %q, want edge-1", got)
			}
			return nil
		})
		if podExists(t, c, f.ns, "web-1") {
			t.Error("edge-1 was upgraded with web-1 still on it")
		}
		f.succeed("edge-1")
		f.waitFor("v2", condition(machinesv1.ReadyCondition, machinesv1.RolloutCompleteReason, "all 2"))
		if !unschedulable(t, c, "edge-1") {
			t.Error("edge-1 was cordoned by someone else before the rollout and got uncordoned by it")
		}
		for _, name := range []string{"edge-0", "edge-1"} {
			if p := f.plan(name); p != ownPlan {
				t.Errorf("%s's plan is %q after the rollout, want its own", name, p)
			}
		}
	})

	t.Run("a drain past its timeout fails the machine, halts the rollout and uncordons", func(t *testing.T) {
		f := newNamedFleet(t, c, "drain-timeout", []string{"slow-0", "slow-1"}, map[string]string{"site": "shop", provisioningv1.ClusterLabel: "slow"})
		formedCluster(t, c, f.ns, "slow", "slow-0", "slow-1")
		podOn(t, c, f.ns, "db-0", "slow-0", "StatefulSet")
		budget(t, c, f.ns, 1)
		m := mosi(f.ns, "v2", 1, map[string]string{"site": "shop"})
		m.Spec.Drain = &upgradev1.DrainSpec{Timeout: &metav1.Duration{Duration: 2 * time.Second}}
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", condition(machinesv1.StalledCondition, machinesv1.MachineUpgradeFailedReason, "slow-0", "timed out after 2s", "drain-timeout/db-0 blocked by a PodDisruptionBudget"))
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if unschedulable(t, c, "slow-0") {
				return fmt.Errorf("slow-0 still cordoned after its drain failed")
			}
			return nil
		})
		if p := f.plan("slow-0"); p != ownPlan || unschedulable(t, c, "slow-1") || !podExists(t, c, f.ns, "db-0") {
			t.Errorf("after the failed drain: slow-0 plan %q (want its own), slow-1 cordoned %v (want untouched), db-0 kept %v",
				p, unschedulable(t, c, "slow-1"), podExists(t, c, f.ns, "db-0"))
		}
	})

	t.Run("a pod no controller owns refuses the drain without force", func(t *testing.T) {
		f := newNamedFleet(t, c, "drain-refused", []string{"bare-0"}, map[string]string{"site": "shop", provisioningv1.ClusterLabel: "bare"})
		formedCluster(t, c, f.ns, "bare", "bare-0")
		podOn(t, c, f.ns, "lonely", "bare-0", "")
		m := mosi(f.ns, "v2", 1, map[string]string{"site": "shop"})
		m.Spec.Drain = &upgradev1.DrainSpec{}
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", condition(machinesv1.StalledCondition, machinesv1.MachineUpgradeFailedReason, "bare-0", "drain-refused/lonely has no controller", "set drain.force"))
		if !podExists(t, c, f.ns, "lonely") {
			t.Error("the refused drain evicted the pod anyway")
		}
	})

	t.Run("cordon only, on a cluster that is not connected, waits and says why", func(t *testing.T) {
		f := newNamedFleet(t, c, "cordon-offline", []string{"off-0"}, map[string]string{"site": "shop", provisioningv1.ClusterLabel: "off"})
		formedCluster(t, c, f.ns, "off", "off-0")
		var fc fleetv1.Cluster
		if err := c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "off-fleet"}, &fc); err != nil {
			t.Fatal(err)
		}
		fc.Status.Conditions[0].Status, fc.Status.Conditions[0].Reason = metav1.ConditionFalse, "AgentGone"
		if err := c.Status().Update(ctx, &fc); err != nil {
			t.Fatal(err)
		}
		m := mosi(f.ns, "v2", 1, map[string]string{"site": "shop"})
		m.Spec.Cordon = ptr.To(true)
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		f.waitFor("v2", machineState("off-0", machinesv1.MachineUpgradeDraining, "cluster off is not connected"))
		if p := f.plan("off-0"); p != ownPlan {
			t.Errorf("off-0 got plan %q before its node could be cordoned", p)
		}
		fc.Status.Conditions[0].Status, fc.Status.Conditions[0].Reason = metav1.ConditionTrue, "Connected"
		if err := c.Status().Update(ctx, &fc); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if !unschedulable(t, c, "off-0") || !strings.Contains(f.plan("off-0"), "upgrade --image") {
				return fmt.Errorf("off-0: cordoned %v, plan %q; want cordoned with the upgrade plan", unschedulable(t, c, "off-0"), f.plan("off-0"))
			}
			return nil
		})
		// Cancelling the rollout gives the node back.
		if err := c.Delete(ctx, m); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if unschedulable(t, c, "off-0") || f.plan("off-0") != ownPlan {
				return fmt.Errorf("after cancelling: off-0 cordoned %v, plan %q", unschedulable(t, c, "off-0"), f.plan("off-0"))
			}
			return nil
		})
	})
}
