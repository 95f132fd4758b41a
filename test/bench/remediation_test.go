package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	crtctrl "github.com/edgefleet/edgefleet/internal/controller/clusterregistrationtoken"
	"github.com/edgefleet/edgefleet/internal/controller/machineinventory"
	"github.com/edgefleet/edgefleet/internal/controller/provisionedcluster"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

const (
	orderRemediation = orderSeedImage + 16
	// remediationRounds is how many workers fail one after another.
	remediationRounds = 5
)

// sameAPIServerNodes stands in for formed clusters' tunnels: the nodes
// live in the benchmark's kube-apiserver.
type sameAPIServerNodes struct{ cs kubernetes.Interface }

func (s sameAPIServerNodes) Clientset(context.Context, types.NamespacedName) (kubernetes.Interface, error) {
	return s.cs, nil
}

// TestRemediationDetectionToReplacement measures, for one failing worker at
// a time, the time from the moment its node has been NotReady for the
// health check's timeout to (a) the remediation starting (detection), (b)
// the machine replaced (Node deleted, machine released, spare adopted) and
// (c) the spare Ready. The formation controller runs in-process with its
// production node read interval (10 s) against a real kube-apiserver; the
// machines are simulated (plans applied at once, as in
// TestFormation100Clusters) and so are the formed cluster's Nodes (in the
// same API server, made NotReady by the benchmark). No BMC: the machine is
// replaced directly.
func TestRemediationDetectionToReplacement(t *testing.T) {
	requireBench(t)
	ctrl.SetLogger(logr.Discard())
	ctx := context.Background()
	kube := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	c := kube.Client
	cs := kubernetes.NewForConfigOrDie(kube.RESTConfig())
	mgr, err := ctrl.NewManager(kube.RESTConfig(), ctrl.Options{Scheme: server.Scheme(), Logger: logr.Discard(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	r := &provisionedcluster.Reconciler{Nodes: sameAPIServerNodes{cs}, Releases: map[string]kubedistro.Binaries{formationVersion: {Image: "registry.example.com/kube:" + formationVersion}}}
	for _, setup := range []func(ctrl.Manager) error{r.SetupWithManager, (&machineinventory.Reconciler{}).SetupWithManager, (&crtctrl.Reconciler{}).SetupWithManager} {
		if err := setup(mgr); err != nil {
			t.Fatal(err)
		}
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	}()

	ns := "remediation"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	setReady := func(name string, status corev1.ConditionStatus, since time.Time) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		}
		if err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "Simulated", LastHeartbeatTime: metav1.NewTime(since), LastTransitionTime: metav1.NewTime(since)}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	}
	names := []string{"server-0"}
	for i := range remediationRounds + 1 {
		names = append(names, fmt.Sprintf("worker-%d", i))
	}
	for i, name := range names {
		role := "worker"
		if i == 0 {
			role = "server"
		}
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"role": role}}}
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
		addr := fmt.Sprintf("10.8.0.%d", i+2)
		inv.Status.Network = machinesv1.NetworkStatus{PrimaryAddress: addr, Addresses: []string{addr}}
		inv.Status.Conditions = []metav1.Condition{{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: "Registered", Message: "simulated", LastTransitionTime: metav1.Now()}}
		if err := c.Status().Update(ctx, inv); err != nil {
			t.Fatal(err)
		}
		if err := setReady(name, corev1.ConditionTrue, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The simulated node agents apply every new plan at once.
	simCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		applied := map[string]string{}
		for simCtx.Err() == nil {
			var list corev1.SecretList
			if err := c.List(simCtx, &list, client.InNamespace(ns)); err == nil {
				for _, s := range list.Items {
					raw := s.Data[nodeplan.SecretKey]
					if len(raw) == 0 || s.Type != machineregistration.PlanSecret(&machinesv1.MachineInventory{}).Type {
						continue
					}
					sum := nodeplan.Checksum(raw)
					if applied[s.Name] != sum && simulateApplied(simCtx, c, ns, s.Name, sum) == nil {
						applied[s.Name] = sum
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	defer wg.Wait()
	defer stop()

	timeout := 5 * time.Minute // the default unhealthy timeout
	pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "site"}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroEdgefleet, Version: formationVersion,
		ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}}},
		Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: provisioningv1.MachinePool{Replicas: 1,
			MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}, HealthCheck: &provisioningv1.HealthCheck{}}}},
	}}
	if err := c.Create(ctx, pc); err != nil {
		t.Fatal(err)
	}
	// The formed cluster's agent registers and is connected.
	fc := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cluster-site", Annotations: map[string]string{fleetv1.RegistrationTokenAnnotation: "site-join"}},
		Spec: fleetv1.ClusterSpec{ClientID: "bench-site"}}
	if err := c.Create(ctx, fc); err != nil {
		t.Fatal(err)
	}
	fc.Status.Conditions = []metav1.Condition{{Type: fleetv1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: "Connected", Message: "simulated agent", LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(ctx, fc); err != nil {
		t.Fatal(err)
	}
	worker := func() (string, error) {
		var cms provisioningv1.ClusterMachineList
		if err := c.List(ctx, &cms, client.InNamespace(ns), client.MatchingLabels{provisioningv1.PoolLabel: "default"}); err != nil {
			return "", err
		}
		if len(cms.Items) != 1 {
			return "", fmt.Errorf("%d workers", len(cms.Items))
		}
		cm := cms.Items[0]
		if !meta.IsStatusConditionTrue(cm.Status.Conditions, provisioningv1.ReadyCondition) {
			return "", fmt.Errorf("worker %s not Ready", cm.Name)
		}
		return cm.Name, nil
	}
	var detect, replace, ready []time.Duration
	for round := range remediationRounds {
		var victim string
		waitFor(t, 2*time.Minute, "one Ready worker", func() bool { victim, err = worker(); return err == nil })
		// Settle a little so the round starts at a random point of the
		// controller's 10 s node read cycle.
		time.Sleep(time.Duration(round*1700) * time.Millisecond)
		t0 := time.Now()
		if err := setReady(victim, corev1.ConditionUnknown, t0.Add(-timeout)); err != nil {
			t.Fatal(err)
		}
		var started, replaced time.Duration
		waitFor(t, time.Minute, victim+" replaced and the spare Ready", func() bool {
			var cm provisioningv1.ClusterMachine
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: victim}, &cm)
			if started == 0 && (apierrors.IsNotFound(err) || cm.Status.Remediation != nil) {
				started = time.Since(t0)
			}
			if replaced == 0 && apierrors.IsNotFound(err) {
				replaced = time.Since(t0)
			}
			name, werr := worker()
			return replaced > 0 && werr == nil && name != victim
		})
		detect, replace, ready = append(detect, started), append(replace, replaced), append(ready, time.Since(t0))
		t.Logf("round %d: %s detected after %s, replaced after %s, spare Ready after %s", round+1, victim, secs(started), secs(replaced), secs(time.Since(t0)))
	}
	stat := func(ds []time.Duration) string {
		s := slices.Clone(ds)
		slices.Sort(s)
		return fmt.Sprintf("%s / %s / %s", secs(s[0]), secs(s[len(s)/2]), secs(s[len(s)-1]))
	}
	t.Logf("detection-to-replacement over %d rounds (min / median / max): detected %s, replaced %s, spare Ready %s", remediationRounds, stat(detect), stat(replace), stat(ready))
	var b strings.Builder
	fmt.Fprintf(&b, "## Health remediation: detection to replacement\n\n")
	fmt.Fprintf(&b, "One worker of a 1 server + 1 worker cluster fails %d times in a row (its Node NotReady for the health check's 5 min timeout at t=0), each time replaced by a spare. ", remediationRounds)
	fmt.Fprintf(&b, "The formation controller runs in-process with its production node read interval (10 s) against a real kube-apiserver; machines and the formed cluster's Nodes are simulated (plans applied at once). No BMC: replaced directly.\n\n")
	fmt.Fprintf(&b, "| step (from the timeout expiring) | min / median / max |\n|---|---|\n")
	fmt.Fprintf(&b, "| remediation started (detected) | %s |\n| replaced (Node deleted, machine released, spare adopted) | %s |\n| spare Ready | %s |\n", stat(detect), stat(replace), stat(ready))
	addSection(orderRemediation, b.String())
}
