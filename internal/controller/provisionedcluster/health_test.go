package provisionedcluster_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	bmcctrl "github.com/edgefleet/edgefleet/internal/controller/bmc"
	crtctrl "github.com/edgefleet/edgefleet/internal/controller/clusterregistrationtoken"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/controller/machineinventory"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/redfishemu"
)

// sameAPIServer stands in for the formed clusters' tunnels: their Nodes
// live in the test's own kube-apiserver (real API semantics: conditions,
// cordon, eviction, delete), created and made healthy or not by the test.
type sameAPIServer struct{ cs kubernetes.Interface }

func (s sameAPIServer) Clientset(context.Context, types.NamespacedName) (kubernetes.Interface, error) {
	return s.cs, nil
}

// nodes plays the formed cluster's kubelets: it creates Nodes and sets
// their Ready condition.
type nodes struct {
	t  *testing.T
	cs kubernetes.Interface
}

func (n nodes) ready(name string, status corev1.ConditionStatus, since time.Time) {
	n.t.Helper()
	ctx := context.Background()
	ctrltest.Eventually(n.t, 10*time.Second, func() error {
		node, err := n.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node, err = n.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		}
		if err != nil {
			return err
		}
		msg := "kubelet is posting ready status"
		if status != corev1.ConditionTrue {
			msg = "Kubelet stopped posting node status."
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "Simulated", Message: msg,
			LastHeartbeatTime: metav1.NewTime(since), LastTransitionTime: metav1.NewTime(since)}}
		_, err = n.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

func (n nodes) get(name string) (*corev1.Node, error) {
	return n.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
}

// fastChecks: Ready False/Unknown for 1s; no startup timeout unless set.
func fastChecks(maxUnhealthy string) *provisioningv1.HealthCheck {
	zero := metav1.Duration{}
	hc := &provisioningv1.HealthCheck{
		UnhealthyNodeConditions: []provisioningv1.UnhealthyNodeCondition{
			{Type: "Ready", Status: "False", Timeout: metav1.Duration{Duration: time.Second}},
			{Type: "Ready", Status: "Unknown", Timeout: metav1.Duration{Duration: time.Second}},
		},
		NodeStartupTimeout: &zero,
		PowerCycleTimeout:  &metav1.Duration{Duration: 4 * time.Second},
	}
	if maxUnhealthy != "" {
		v := intstr.Parse(maxUnhealthy)
		hc.MaxUnhealthy = &v
	}
	return hc
}

// formed forms cluster name in ns from sim machines: servers and workers
// (the pools' selectors take role=server / role=worker), every node Ready,
// joined to the fleet, and waits for Ready.
func formed(t *testing.T, c client.Client, sim *simMachines, n nodes, ns, name string, spec provisioningv1.ProvisionedClusterSpec, machines map[string]string) {
	t.Helper()
	i := 0
	for m, role := range machines {
		i++
		sim.add(m, map[string]string{"role": role}, fmt.Sprintf("10.9.%d.%d", len(ns), i))
		n.ready(m, corev1.ConditionTrue, time.Now())
	}
	sim.waitReady()
	spec.Distro, spec.Version = provisioningv1.DistroEdgefleet, v1
	if err := c.Create(context.Background(), &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, c, ns, name, provisioningv1.ControlPlaneReadyCondition, metav1.ConditionTrue, "", 30*time.Second)
	joinFleet(t, c, ns, name)
	waitCondition(t, c, ns, name, provisioningv1.ReadyCondition, metav1.ConditionTrue, "", 30*time.Second)
}

func machineOf(t *testing.T, c client.Client, ns, name string) (*provisioningv1.ClusterMachine, error) {
	t.Helper()
	cm := &provisioningv1.ClusterMachine{}
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cm)
	return cm, err
}

// waitReplaced waits until old's ClusterMachine is gone, spare's exists,
// old's inventory is released and quarantined, old's Node is deleted and
// the cluster is Ready again.
func waitReplaced(t *testing.T, c client.Client, n nodes, ns, cluster, old, spare string) {
	t.Helper()
	ctrltest.Eventually(t, 60*time.Second, func() error {
		if _, err := machineOf(t, c, ns, old); !apierrors.IsNotFound(err) {
			return fmt.Errorf("ClusterMachine %s still exists (%v)", old, err)
		}
		if _, err := machineOf(t, c, ns, spare); err != nil {
			return fmt.Errorf("spare %s not adopted: %w", spare, err)
		}
		inv := get(t, c, ns, old, &machinesv1.MachineInventory{})
		if inv.Labels[provisioningv1.ClusterLabel] != "" || !strings.HasPrefix(inv.Annotations[provisioningv1.RemediatedAnnotation], cluster+" ") {
			return fmt.Errorf("inventory %s labels %v annotations %v: want released and quarantined", old, inv.Labels, inv.Annotations)
		}
		if _, err := n.get(old); !apierrors.IsNotFound(err) {
			return fmt.Errorf("node %s not deleted (%v)", old, err)
		}
		return nil
	})
	waitCondition(t, c, ns, cluster, provisioningv1.ReadyCondition, metav1.ConditionTrue, "", 30*time.Second)
	waitEvent(t, c, ns, old, provisioningv1.RemediatedReason, "Replaced machine "+old)
}

func waitEvent(t *testing.T, c client.Client, ns, regarding, reason, contains string) {
	t.Helper()
	ctrltest.Eventually(t, 10*time.Second, func() error {
		var evs corev1.EventList
		if err := c.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Related != nil && e.Related.Name == regarding || e.InvolvedObject.Name == regarding {
				seen = append(seen, e.Reason+": "+e.Message)
				if e.Reason == reason && strings.Contains(e.Message, contains) {
					return nil
				}
			}
		}
		return fmt.Errorf("no %s event about %s containing %q; seen %q", reason, regarding, contains, seen)
	})
}

// stays checks for a while that check keeps passing (no remediation
// happens behind the status).
func stays(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if err := check(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRemediation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	kube := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	c := kube.Client
	cs := kubernetes.NewForConfigOrDie(rest.CopyConfig(kube.RESTConfig()))
	r := newReconciler()
	r.Nodes, r.NodeReadInterval = sameAPIServer{cs}, 500*time.Millisecond
	r.NodeAgentHeartbeat = testHeartbeat
	startManager(t, kube.RESTConfig(), r.SetupWithManager,
		(&machineinventory.Reconciler{}).SetupWithManager, (&crtctrl.Reconciler{}).SetupWithManager,
		func(m ctrl.Manager) error {
			return (&bmcctrl.Reconciler{PollInterval: time.Second}).SetupWithManager(m)
		})
	n := nodes{t: t, cs: cs}
	ctx := context.Background()
	cp := func(replicas int32) provisioningv1.MachinePool {
		return pool(replicas, map[string]string{"role": "server"})
	}
	workers := func(replicas int32, hc *provisioningv1.HealthCheck) []provisioningv1.WorkerPool {
		p := pool(replicas, map[string]string{"role": "worker"})
		p.HealthCheck = hc
		return []provisioningv1.WorkerPool{{Name: "default", MachinePool: p}}
	}

	t.Run("an unhealthy worker without a BMC is replaced by a spare", func(t *testing.T) {
		ns := "rem-replace"
		sim := newSim(t, c, ns)
		formed(t, c, sim, n, ns, "shop", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp(1), Workers: workers(1, fastChecks(""))},
			map[string]string{"a-s0": "server", "a-w0": "worker", "a-w1": "worker"})
		if _, err := machineOf(t, c, ns, "a-w1"); !apierrors.IsNotFound(err) {
			t.Fatalf("the spare a-w1 is adopted before any failure (%v)", err)
		}
		pc := get(t, c, ns, "shop", &provisioningv1.ProvisionedCluster{})
		if !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition) {
			t.Fatalf("RemediationAllowed = %+v", meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition))
		}
		n.ready("a-w0", corev1.ConditionUnknown, time.Now())
		waitReplaced(t, c, n, ns, "shop", "a-w0", "a-w1")
		waitEvent(t, c, ns, "a-w0", provisioningv1.UnhealthyNodeReason, "Ready is Unknown")
		// The quarantined machine is not adopted again, though it matches,
		// is Ready and comes first by name.
		stays(t, 2*time.Second, func() error {
			if _, err := machineOf(t, c, ns, "a-w0"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the remediated machine a-w0 was adopted again (%v)", err)
			}
			return nil
		})
	})

	t.Run("more unhealthy than maxUnhealthy short-circuits until it is not", func(t *testing.T) {
		ns := "rem-short"
		sim := newSim(t, c, ns)
		formed(t, c, sim, n, ns, "site", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp(1), Workers: workers(2, fastChecks("1"))},
			map[string]string{"b-s0": "server", "b-w0": "worker", "b-w1": "worker", "b-w2": "worker"})
		// The whole site's workers go dark.
		n.ready("b-w0", corev1.ConditionUnknown, time.Now())
		n.ready("b-w1", corev1.ConditionUnknown, time.Now())
		pc := waitCondition(t, c, ns, "site", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.TooManyUnhealthyReason, 30*time.Second)
		msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message
		if !strings.Contains(msg, "2 of 2 machines unhealthy (b-w0 (Ready Unknown ") || !strings.Contains(msg, ", b-w1 (Ready Unknown ") || !strings.Contains(msg, "maxUnhealthy 1") {
			t.Fatalf("RemediationAllowed message %q: want the count, the machines and the limit", msg)
		}
		if pc.Status.Workers[0].Unhealthy != 2 {
			t.Errorf("status.workers[0].unhealthy = %d, want 2", pc.Status.Workers[0].Unhealthy)
		}
		stays(t, 3*time.Second, func() error {
			for _, name := range []string{"b-w0", "b-w1"} {
				cm, err := machineOf(t, c, ns, name)
				if err != nil {
					return fmt.Errorf("ClusterMachine %s: %w (short-circuited: nothing may be remediated)", name, err)
				}
				if cm.Status.Remediation != nil {
					return fmt.Errorf("ClusterMachine %s remediation %+v while short-circuited", name, cm.Status.Remediation)
				}
			}
			if _, err := machineOf(t, c, ns, "b-w2"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("spare b-w2 adopted while short-circuited (%v)", err)
			}
			return nil
		})
		// One comes back: the other one is remediated.
		n.ready("b-w0", corev1.ConditionTrue, time.Now())
		waitReplaced(t, c, n, ns, "site", "b-w1", "b-w2")
		waitCondition(t, c, ns, "site", provisioningv1.RemediationAllowedCondition, metav1.ConditionTrue, "", 10*time.Second)
	})

	t.Run("a site going dark is caught before every node's timer ran out", func(t *testing.T) {
		ns := "rem-dark"
		sim := newSim(t, c, ns)
		hc := fastChecks("1")
		hc.UnhealthyNodeConditions = []provisioningv1.UnhealthyNodeCondition{{Type: "Ready", Status: "Unknown", Timeout: metav1.Duration{Duration: time.Minute}}}
		formed(t, c, sim, n, ns, "dark", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp(1), Workers: workers(2, hc)},
			map[string]string{"g-s0": "server", "g-w0": "worker", "g-w1": "worker", "g-w2": "worker"})
		// g-w0's timer ran out; g-w1 went dark just now.
		n.ready("g-w1", corev1.ConditionUnknown, time.Now())
		n.ready("g-w0", corev1.ConditionUnknown, time.Now().Add(-2*time.Minute))
		pc := waitCondition(t, c, ns, "dark", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.TooManyUnhealthyReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message; !strings.Contains(msg, "2 of 2 machines unhealthy (g-w0 (Ready Unknown ") || !strings.Contains(msg, ", g-w1 (Ready Unknown ") {
			t.Fatalf("message %q", msg)
		}
		stays(t, 2*time.Second, func() error {
			cm, err := machineOf(t, c, ns, "g-w0")
			if err != nil || cm.Status.Remediation != nil {
				return fmt.Errorf("g-w0 remediated while its site is dark: %v %+v", err, cm.Status.Remediation)
			}
			return nil
		})
	})

	t.Run("kubelet heartbeats: a dark site seen before its nodes turn Unknown, a returning one not replaced", func(t *testing.T) {
		// Real kubelets renew their Lease every 10s and the node lifecycle
		// controller marks each node Unknown 50s after its own last
		// renewal: a site's nodes turn Unknown up to 15s apart, more than a
		// short timeout (CI: a dark site's first worker was replaced).
		ns := "rem-hb"
		sim := newSim(t, c, ns)
		hb := kubeletLeases(t, cs, "h-s0", "h-w0", "h-w1", "h-w2")
		formed(t, c, sim, n, ns, "hb", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp(1), Workers: workers(2, fastChecks("1"))},
			map[string]string{"h-s0": "server", "h-w0": "worker", "h-w1": "worker", "h-w2": "worker"})
		// The site goes dark: both kubelets stop renewing; later h-w0's
		// node is marked Unknown (its 1s timer runs out), h-w1's not yet.
		hb.stop("h-w0", "h-w1")
		time.Sleep(3 * time.Second)
		n.ready("h-w0", corev1.ConditionUnknown, time.Now())
		pc := waitCondition(t, c, ns, "hb", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.TooManyUnhealthyReason, 30*time.Second)
		// Each machine's reason is named: h-w1 counts only for its silent
		// kubelet heartbeat, and its own condition says so.
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message; !strings.Contains(msg, "2 of 2 machines unhealthy (h-w0 (") || !strings.Contains(msg, ", h-w1 (kubelet heartbeat silent ") {
			t.Fatalf("message %q: want each machine with its reason", msg)
		}
		ctrltest.Eventually(t, 10*time.Second, func() error {
			cm, err := machineOf(t, c, ns, "h-w1")
			if err != nil {
				return err
			}
			hc := meta.FindStatusCondition(cm.Status.Conditions, provisioningv1.HealthCheckSucceededCondition)
			if hc == nil || hc.Status != metav1.ConditionTrue || hc.Reason != provisioningv1.UnhealthyNodeReason || !strings.Contains(hc.Message, "kubelet heartbeat silent") || !strings.Contains(hc.Message, "not unhealthy yet") {
				return fmt.Errorf("h-w1 HealthCheckSucceeded %+v: want True, UnhealthyNode, failing for its silent heartbeat", hc)
			}
			return nil
		})
		notRemediated := func() error {
			for _, name := range []string{"h-w0", "h-w1"} {
				cm, err := machineOf(t, c, ns, name)
				if err != nil || cm.Status.Remediation != nil {
					return fmt.Errorf("%s remediated: %v %+v", name, err, cm.Status.Remediation)
				}
			}
			return nil
		}
		stays(t, 3*time.Second, notRemediated)
		// The network returns: both kubelets renew again, h-w1's node was
		// never marked, h-w0's is still Unknown until its kubelet posts
		// status. The short-circuit ends; h-w0 is not remediated for the
		// seconds its status takes, though its timer ran out long ago.
		hb.start("h-w0", "h-w1")
		waitCondition(t, c, ns, "hb", provisioningv1.RemediationAllowedCondition, metav1.ConditionTrue, "", 30*time.Second)
		stays(t, 3*time.Second, notRemediated)
		n.ready("h-w0", corev1.ConditionTrue, time.Now())
		// A kubelet that stays silent is still found: h-w1 dies alone.
		hb.stop("h-w1")
		n.ready("h-w1", corev1.ConditionUnknown, time.Now())
		waitReplaced(t, c, n, ns, "hb", "h-w1", "h-w2")
	})

	t.Run("the last control-plane machine and etcd quorum are protected", func(t *testing.T) {
		ns := "rem-quorum"
		sim := newSim(t, c, ns)
		one := cp(1)
		one.HealthCheck = fastChecks("")
		formed(t, c, sim, n, ns, "solo", provisioningv1.ProvisionedClusterSpec{ControlPlane: one},
			map[string]string{"c-s0": "server"})
		n.ready("c-s0", corev1.ConditionUnknown, time.Now())
		pc := waitCondition(t, c, ns, "solo", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.ControlPlaneProtectedReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message; !strings.Contains(msg, "c-s0 is the last control-plane machine") {
			t.Fatalf("message %q", msg)
		}
		stays(t, 2*time.Second, func() error {
			cm, err := machineOf(t, c, ns, "c-s0")
			if err != nil || cm.Status.Remediation != nil {
				return fmt.Errorf("the last server was remediated: %v %+v", err, cm.Status.Remediation)
			}
			return nil
		})

		// Three servers, two unhealthy: within maxUnhealthy (40% of 3 → 2)
		// but remediating either could break etcd's quorum.
		three := pool(3, map[string]string{"role": "trio"})
		three.HealthCheck = fastChecks("")
		formed(t, c, sim, n, ns, "trio", provisioningv1.ProvisionedClusterSpec{ControlPlane: three},
			map[string]string{"d-s0": "trio", "d-s1": "trio", "d-s2": "trio", "d-s3": "trio"})
		n.ready("d-s1", corev1.ConditionUnknown, time.Now())
		n.ready("d-s2", corev1.ConditionUnknown, time.Now())
		pc = waitCondition(t, c, ns, "trio", provisioningv1.RemediationAllowedCondition, metav1.ConditionFalse, provisioningv1.ControlPlaneProtectedReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition).Message; !strings.Contains(msg, "break quorum") || !strings.Contains(msg, "d-s2") {
			t.Fatalf("message %q", msg)
		}
		// One server heals: the other is replaced by the spare server.
		n.ready("d-s2", corev1.ConditionTrue, time.Now())
		waitReplaced(t, c, n, ns, "trio", "d-s1", "d-s3")
	})

	t.Run("a node that never appears is replaced after the startup timeout", func(t *testing.T) {
		ns := "rem-startup"
		sim := newSim(t, c, ns)
		hc := fastChecks("")
		hc.NodeStartupTimeout = &metav1.Duration{Duration: 3 * time.Second}
		sim.add("e-w0", map[string]string{"role": "worker"}, "10.9.5.9") // no Node: its kubelet never registers
		formed(t, c, sim, n, ns, "late", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp(1), Workers: workers(1, hc)},
			map[string]string{"e-s0": "server", "e-w1": "worker"})
		waitReplaced(t, c, n, ns, "late", "e-w0", "e-w1")
		waitEvent(t, c, ns, "e-w0", provisioningv1.NodeStartupTimeoutReason, "nodeStartupTimeout 3s")
	})

	t.Run("the BMC power-cycles first; replacement only when that does not heal", func(t *testing.T) {
		ns := "rem-bmc"
		sim := newSim(t, c, ns)
		formed(t, c, sim, n, ns, "metal", provisioningv1.ProvisionedClusterSpec{ControlPlane: cp(1), Workers: workers(1, fastChecks(""))},
			map[string]string{"f-s0": "server", "f-w0": "worker", "f-w1": "worker"})
		power := &redfishemu.SimulatedMachine{}
		emu, err := redfishemu.Start(redfishemu.Options{Username: "admin", Password: "pw", Machine: power, SerialNumber: "SN-F-W0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(emu.Close)
		if err := power.PowerOn(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"}, StringData: map[string]string{"username": "admin", "password": "pw"}}); err != nil {
			t.Fatal(err)
		}
		b := &machinesv1.BMC{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "f-w0-bmc"}, Spec: machinesv1.BMCSpec{Address: emu.URL,
			CredentialsSecretRef: machinesv1.ObjectReference{Name: "bmc"}, CABundle: string(emu.CA.CertPEM), InventoryRef: &machinesv1.ObjectReference{Name: "f-w0"}}}
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), b) })
		ctrltest.Eventually(t, 20*time.Second, func() error {
			got := get(t, c, ns, b.Name, &machinesv1.BMC{})
			if got.Status.InventoryRef == nil || got.Status.InventoryRef.Name != "f-w0" {
				return fmt.Errorf("BMC not linked yet: %+v", got.Status.Conditions)
			}
			return nil
		})

		// 1. A power cycle heals it: the node comes back Ready after the
		// machine boots again.
		boots := len(power.Boots())
		n.ready("f-w0", corev1.ConditionUnknown, time.Now())
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if len(power.Boots()) <= boots || !power.PoweredOn() {
				return fmt.Errorf("machine not power-cycled yet (boots %d, on %v)", len(power.Boots()), power.PoweredOn())
			}
			return nil
		})
		var cm *provisioningv1.ClusterMachine
		if node, err := n.get("f-w0"); err != nil || !node.Spec.Unschedulable {
			t.Errorf("node f-w0 not cordoned during its remediation (%v)", err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			cm, err = machineOf(t, c, ns, "f-w0")
			if err != nil {
				return err
			}
			if r := cm.Status.Remediation; r == nil || r.Phase != provisioningv1.PhaseWaitingForHealthy || r.BMCName != "f-w0-bmc" || r.PowerCycled == nil {
				return fmt.Errorf("remediation %+v: want WaitingForHealthy after BMC f-w0-bmc's power cycle", r)
			}
			return nil
		})
		n.ready("f-w0", corev1.ConditionTrue, time.Now())
		ctrltest.Eventually(t, 20*time.Second, func() error {
			cm, err = machineOf(t, c, ns, "f-w0")
			if err != nil {
				return err
			}
			node, err := n.get("f-w0")
			if err != nil {
				return err
			}
			if cm.Status.Remediation != nil || node.Spec.Unschedulable {
				return fmt.Errorf("remediation %+v, node unschedulable %v: want ended and uncordoned", cm.Status.Remediation, node.Spec.Unschedulable)
			}
			return nil
		})
		waitEvent(t, c, ns, "f-w0", provisioningv1.RemediatedReason, "healthy again after its power cycle through BMC f-w0-bmc")
		if got := get(t, c, ns, b.Name, &machinesv1.BMC{}); got.Status.PowerCycle == nil || got.Status.PowerCycle.Result != machinesv1.ActionSucceeded {
			t.Errorf("BMC status.powerCycle = %+v", got.Status.PowerCycle)
		}
		if _, err := machineOf(t, c, ns, "f-w1"); !apierrors.IsNotFound(err) {
			t.Fatalf("spare adopted though the power cycle healed the machine (%v)", err)
		}

		// 2. It fails again and the power cycle does not help: replaced.
		boots = len(power.Boots())
		n.ready("f-w0", corev1.ConditionFalse, time.Now())
		waitReplaced(t, c, n, ns, "metal", "f-w0", "f-w1")
		if len(power.Boots()) <= boots {
			t.Errorf("replaced without a power cycle first (boots %d → %d)", boots, len(power.Boots()))
		}
		waitEvent(t, c, ns, "f-w0", provisioningv1.RemediatingReason, "still unhealthy 4s after its power cycle")
	})
	t.Run("node agent silent", func(t *testing.T) { testNodeAgentSilent(t, c, n) })
	t.Run("a replaced dead server's etcd member is removed", func(t *testing.T) { testEtcdMemberRemoval(t, c, n) })
	t.Run("a dead server scaled down is not waited for", func(t *testing.T) { testDeadScaleDown(t, c, n) })
}

// leaseRenewer plays the kubelets' heartbeats: a Lease per node in
// kube-node-lease (duration 2s: silent after 1.5s), renewed every 200ms
// while started.
type leaseRenewer struct {
	mu      sync.Mutex
	renewed map[string]bool
}

func kubeletLeases(t *testing.T, cs kubernetes.Interface, names ...string) *leaseRenewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	r := &leaseRenewer{renewed: map[string]bool{}}
	r.start(names...)
	two := int32(2)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, name := range names {
				r.mu.Lock()
				on := r.renewed[name]
				r.mu.Unlock()
				if !on {
					continue
				}
				now := metav1.NewMicroTime(time.Now())
				l, err := cs.CoordinationV1().Leases(nodeops.NodeLeaseNamespace).Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					_, _ = cs.CoordinationV1().Leases(nodeops.NodeLeaseNamespace).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
						Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &two, RenewTime: &now}}, metav1.CreateOptions{})
					continue
				}
				if err == nil {
					l.Spec.RenewTime = &now
					_, _ = cs.CoordinationV1().Leases(nodeops.NodeLeaseNamespace).Update(ctx, l, metav1.UpdateOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return r
}

func (r *leaseRenewer) set(on bool, names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		r.renewed[n] = on
	}
}

func (r *leaseRenewer) start(names ...string) { r.set(true, names...) }
func (r *leaseRenewer) stop(names ...string)  { r.set(false, names...) }
