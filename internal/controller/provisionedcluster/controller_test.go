package provisionedcluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	crtctrl "github.com/edgefleet/edgefleet/internal/controller/clusterregistrationtoken"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/controller/machineinventory"
	"github.com/edgefleet/edgefleet/internal/controller/managedosimage"
	"github.com/edgefleet/edgefleet/internal/controller/provisionedcluster"
	"github.com/edgefleet/edgefleet/internal/logging"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

const (
	v1 = "v1.37.1"
	v2 = "v1.37.2"
)

func newReconciler() *provisionedcluster.Reconciler {
	ext, _ := url.Parse("https://manager.example.com:8443")
	return &provisionedcluster.Reconciler{
		ExternalURL: ext, CACertPEM: []byte("-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"), AgentImage: "registry.local/edgefleet-agent:test",
		Grace: 3 * time.Second,
		Versions: map[provisioningv1.Distro][]string{
			provisioningv1.DistroEdgefleet: {v1, v2},
			provisioningv1.DistroK3s:       {"v1.33.5+k3s1"},
		},
		Releases: map[string]kubedistro.Binaries{v1: {Image: "registry.local/kube:" + v1}, v2: {Image: "registry.local/kube:" + v2}},
	}
}

// startManager runs a controller-runtime manager with setups against cfg
// until the test ends (several may run on one API server: two managers).
func startManager(t *testing.T, cfg *rest.Config, setups ...func(ctrl.Manager) error) {
	t.Helper()
	log := logr.Discard()
	if os.Getenv("EDGEFLEET_TEST_LOG") != "" {
		log, _ = logging.New(logging.Options{Level: "debug"}, os.Stderr)
	}
	ctrl.SetLogger(log)
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: server.Scheme(), Logger: log, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range setups {
		if err := s(mgr); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	})
}

func pool(replicas int32, labels map[string]string) provisioningv1.MachinePool {
	return provisioningv1.MachinePool{Replicas: replicas, MachineSelector: metav1.LabelSelector{MatchLabels: labels}}
}

func get[T client.Object](t *testing.T, c client.Client, ns, name string, obj T) T {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// condition returns a check that obj's condition typ has status and,
// when reason is set, reason.
func waitCondition(t *testing.T, c client.Client, ns, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *provisioningv1.ProvisionedCluster {
	t.Helper()
	pc := &provisioningv1.ProvisionedCluster{}
	ctrltest.Eventually(t, timeout, func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pc); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(pc.Status.Conditions, typ)
		if cond == nil || cond.Status != status || (reason != "" && cond.Reason != reason) {
			return fmt.Errorf("%s/%s %s = %+v, want %s %s", ns, name, typ, cond, status, reason)
		}
		return nil
	})
	return pc
}

func claimsOf(t *testing.T, c client.Client, ns string) map[string]string {
	t.Helper()
	var invs machinesv1.MachineInventoryList
	if err := c.List(context.Background(), &invs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, inv := range invs.Items {
		if cl := inv.Labels[provisioningv1.ClusterLabel]; cl != "" {
			out[inv.Name] = cl + "/" + inv.Labels[provisioningv1.PoolLabel]
		}
	}
	return out
}

// joinFleet plays the formed cluster's agent registering with the join
// token: the fleet Cluster it creates carries the token's name, and the
// cluster controller marks it Connected.
func joinFleet(t *testing.T, c client.Client, ns, pc string) {
	t.Helper()
	ctx := context.Background()
	fc := &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cluster-" + pc, Annotations: map[string]string{
		fleetv1.RegistrationTokenAnnotation: pc + "-join",
	}}, Spec: fleetv1.ClusterSpec{ClientID: "sim-" + pc}}
	if err := c.Create(ctx, fc); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, 10*time.Second, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(fc), fc); err != nil {
			return err
		}
		fc.Status.Conditions = []metav1.Condition{{Type: fleetv1.ConnectedCondition, Status: metav1.ConditionTrue, Reason: "Connected", Message: "simulated agent", LastTransitionTime: metav1.Now()}}
		return c.Status().Update(ctx, fc)
	})
}

func TestFormation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	kube := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	c := kube.Client
	startManager(t, kube.RESTConfig(), newReconciler().SetupWithManager,
		(&machineinventory.Reconciler{}).SetupWithManager, (&crtctrl.Reconciler{}).SetupWithManager)
	ctx := context.Background()

	t.Run("form, join the fleet, scale up, upgrade, scale down", func(t *testing.T) {
		ns := "form"
		sim := newSim(t, c, ns)
		if err := c.Create(ctx, &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "resettable"},
			Spec: machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Reset: &machinesv1.ResetConfig{Enabled: true}}}}); err != nil {
			t.Fatal(err)
		}
		sim.add("s-0", map[string]string{"role": "server", "site": "shop"}, "10.0.0.10")
		for i := range 3 {
			sim.add(fmt.Sprintf("w-%d", i), map[string]string{"role": "worker", "site": "shop"}, fmt.Sprintf("10.0.0.%d", 20+i))
		}
		// Workers come from a registration that allows a reset.
		for i := range 3 {
			ctrltest.Eventually(t, 10*time.Second, func() error {
				inv := get(t, c, ns, fmt.Sprintf("w-%d", i), &machinesv1.MachineInventory{})
				inv.Spec.RegistrationRef = &machinesv1.ObjectReference{Name: "resettable"}
				return c.Update(ctx, inv)
			})
		}
		sim.waitReady()
		pc := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1,
			ControlPlane: pool(1, map[string]string{"role": "server"}),
			Workers:      []provisioningv1.WorkerPool{{Name: "default", MachinePool: pool(2, map[string]string{"role": "worker"})}},
			Fleet:        provisioningv1.FleetSpec{Labels: map[string]string{"env": "prod"}},
		}}
		pc.Spec.Workers[0].NodeLabels = map[string]string{"tier": "edge"}
		if err := c.Create(ctx, pc); err != nil {
			t.Fatal(err)
		}
		// Bootstrapped and kubelets healthy, waiting only for the fleet agent.
		waitCondition(t, c, ns, "shop", provisioningv1.WorkersReadyCondition, metav1.ConditionTrue, "", 30*time.Second)
		got := waitCondition(t, c, ns, "shop", provisioningv1.ReadyCondition, metav1.ConditionFalse, provisioningv1.WaitingForAgentReason, 10*time.Second)
		if got.Status.Server != "https://10.0.0.10:6443" || got.Status.ControlPlane.Ready != 1 || got.Status.WorkersReady != 2 {
			t.Fatalf("status = %+v", got.Status)
		}
		claims := claimsOf(t, c, ns)
		if len(claims) != 3 || claims["s-0"] != "shop/control-plane" || claims["w-0"] != "shop/default" || claims["w-1"] != "shop/default" {
			t.Fatalf("claims = %v", claims)
		}
		// The init server came first: no worker applied a plan before it.
		if h := sim.history(); len(h) < 3 || h[0] != "s-0@"+v1 {
			t.Fatalf("plan applications = %v, want the init server's first", h)
		}
		init := nodeConfig(t, c, ns, "s-0")
		if !init.Init || init.Role != kubedistro.RoleServer || init.ClusterCA.Key == "" || init.Binaries.Image != "registry.local/kube:"+v1 || init.NodeLabels["site"] != "shop" {
			t.Fatalf("init server's NodeConfig = %+v", init)
		}
		worker := nodeConfig(t, c, ns, "w-0")
		if worker.Role != kubedistro.RoleAgent || worker.ClusterCA.Key != "" || worker.Server != "https://10.0.0.10:6443" || worker.Token != init.Token ||
			worker.NodeLabels["tier"] != "edge" || worker.NodeIP != "10.0.0.20" {
			t.Fatalf("worker's NodeConfig = %+v", worker)
		}
		var sec corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s-0"}, &sec); err != nil {
			t.Fatal(err)
		}
		p, _ := nodeplan.Parse(sec.Data[nodeplan.SecretKey])
		if len(p.Files) != 2 || p.Files[1].Path != kubedistro.ManifestsDir+"/edgefleet-agent.yaml" || !strings.Contains(string(p.Files[1].Data()), "registry.local/edgefleet-agent:test") {
			t.Fatalf("init server's files = %v, want the NodeConfig and the import manifest", p.Files)
		}
		cm := get(t, c, ns, "w-0", &provisioningv1.ClusterMachine{})
		for _, typ := range []string{provisioningv1.AdoptedCondition, provisioningv1.BootstrappedCondition, provisioningv1.NodeReadyCondition, provisioningv1.UpgradedCondition, provisioningv1.ReadyCondition} {
			if !meta.IsStatusConditionTrue(cm.Status.Conditions, typ) {
				t.Errorf("ClusterMachine w-0 %s not True: %+v", typ, cm.Status.Conditions)
			}
		}

		joinFleet(t, c, ns, "shop")
		waitCondition(t, c, ns, "shop", provisioningv1.ReadyCondition, metav1.ConditionTrue, "", 10*time.Second)
		fc := get(t, c, ns, "cluster-shop", &fleetv1.Cluster{})
		if fc.Labels[provisioningv1.ClusterLabel] != "shop" || fc.Labels["env"] != "prod" {
			t.Fatalf("fleet Cluster labels = %v", fc.Labels)
		}
		if got := get(t, c, ns, "shop", &provisioningv1.ProvisionedCluster{}); got.Status.FleetClusterRef == nil || got.Status.FleetClusterRef.Name != "cluster-shop" {
			t.Fatalf("fleetClusterRef = %+v", got.Status.FleetClusterRef)
		}

		// Scale up 2 → 3.
		patchSpec(t, c, ns, "shop", func(s *provisioningv1.ProvisionedClusterSpec) { s.Workers[0].Replicas = 3 })
		ctrltest.Eventually(t, 30*time.Second, func() error {
			pc := get(t, c, ns, "shop", &provisioningv1.ProvisionedCluster{})
			if pc.Status.WorkersReady != 3 || !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) {
				return fmt.Errorf("workers ready %d, conditions %v", pc.Status.WorkersReady, pc.Status.Conditions)
			}
			return nil
		})

		// Rolling upgrade: the server first, then workers one at a time.
		before := len(sim.history())
		patchSpec(t, c, ns, "shop", func(s *provisioningv1.ProvisionedClusterSpec) { s.Version = v2 })
		ctrltest.Eventually(t, 60*time.Second, func() error {
			pc := get(t, c, ns, "shop", &provisioningv1.ProvisionedCluster{})
			if pc.Status.ObservedGeneration != pc.Generation || pc.Status.ControlPlane.Updated != 1 || pc.Status.Workers[0].Updated != 3 ||
				!meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReadyCondition) {
				return fmt.Errorf("status %+v", pc.Status)
			}
			return nil
		})
		upgrades := sim.history()[before:]
		if len(upgrades) != 4 || upgrades[0] != "s-0@"+v2 {
			t.Fatalf("upgrade order = %v, want s-0 first, then the 3 workers", upgrades)
		}
		for _, u := range upgrades[1:] {
			if !strings.HasPrefix(u, "w-") || !strings.HasSuffix(u, "@"+v2) {
				t.Fatalf("upgrade order = %v", upgrades)
			}
		}

		// Scale down 3 → 2: the released machine's registration allows a
		// reset, so its inventory is deleted (the node resets and registers
		// again as a new machine).
		patchSpec(t, c, ns, "shop", func(s *provisioningv1.ProvisionedClusterSpec) { s.Workers[0].Replicas = 2 })
		ctrltest.Eventually(t, 30*time.Second, func() error {
			var invs machinesv1.MachineInventoryList
			if err := c.List(ctx, &invs, client.InNamespace(ns)); err != nil {
				return err
			}
			var cms provisioningv1.ClusterMachineList
			if err := c.List(ctx, &cms, client.InNamespace(ns)); err != nil {
				return err
			}
			if len(invs.Items) != 3 || len(cms.Items) != 3 {
				return fmt.Errorf("%d inventories and %d ClusterMachines, want 3 and 3", len(invs.Items), len(cms.Items))
			}
			return nil
		})
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "w-2"}, &machinesv1.MachineInventory{}); !apierrors.IsNotFound(err) {
			t.Fatalf("w-2 (the last by name) should be released by reset: %v", err)
		}
		waitCondition(t, c, ns, "shop", provisioningv1.ReadyCondition, metav1.ConditionTrue, "", 10*time.Second)

		// Deleting the cluster releases its machines and its fleet Cluster.
		if err := c.Delete(ctx, get(t, c, ns, "shop", &provisioningv1.ProvisionedCluster{})); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, &provisioningv1.ProvisionedCluster{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("cluster still there: %v", err)
			}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cluster-shop"}, &fleetv1.Cluster{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("fleet cluster still there: %v", err)
			}
			if cl := claimsOf(t, c, ns); len(cl) != 0 {
				return fmt.Errorf("claims left: %v", cl)
			}
			return nil
		})
		var sec0 corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s-0"}, &sec0); err != nil {
			t.Fatal(err)
		}
		if want, _ := render.ReleasePlan(render.Edgefleet); string(sec0.Data[nodeplan.SecretKey]) != string(want) {
			t.Fatalf("released server (no reset allowed) has plan %s, want the release plan %s", sec0.Data[nodeplan.SecretKey], want)
		}
	})

	t.Run("a selector matching nothing waits and says so", func(t *testing.T) {
		ns := "nothing"
		sim := newSim(t, c, ns)
		sim.add("m-0", map[string]string{"role": "server"}, "10.0.1.10")
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroK3s, Version: "v1.33.5+k3s1", ControlPlane: pool(1, map[string]string{"role": "server"}),
			Workers: []provisioningv1.WorkerPool{{Name: "gpu", MachinePool: pool(2, map[string]string{"gpu": "true"})}},
		}}); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			pc := get(t, c, ns, "c", &provisioningv1.ProvisionedCluster{})
			ready := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.ReadyCondition)
			if ready == nil || ready.Reason != provisioningv1.WaitingForMachinesReason || !meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ReconcilingCondition) {
				return fmt.Errorf("Ready = %+v", ready)
			}
			if !strings.Contains(ready.Message, "pool gpu needs 2 more machine(s)") || !strings.Contains(ready.Message, "matches 0 Ready unclaimed") || strings.Contains(ready.Message, "control-plane") {
				return fmt.Errorf("Ready message = %q", ready.Message)
			}
			if pc.Status.Workers[0].Current != 0 || pc.Status.Workers[0].MatchingAvailable != 0 || pc.Status.ControlPlane.Current != 1 {
				return fmt.Errorf("pools = %+v %+v", pc.Status.ControlPlane, pc.Status.Workers)
			}
			return nil
		})
		// A machine with the labels arrives: the pool takes it and still waits for one more.
		sim.add("g-0", map[string]string{"gpu": "true"}, "10.0.1.20")
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if got := claimsOf(t, c, ns)["g-0"]; got != "c/gpu" {
				return fmt.Errorf("g-0 claimed by %q", got)
			}
			return nil
		})
	})

	t.Run("a paused cluster adopts nothing and says so", func(t *testing.T) {
		ns := "paused"
		sim := newSim(t, c, ns)
		sim.add("m-0", map[string]string{"role": "server"}, "10.0.6.10")
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1, ControlPlane: pool(1, map[string]string{"role": "server"}), Paused: true,
		}}); err != nil {
			t.Fatal(err)
		}
		waitCondition(t, c, ns, "c", provisioningv1.ReadyCondition, metav1.ConditionFalse, provisioningv1.PausedReason, 20*time.Second)
		time.Sleep(time.Second)
		if cl := claimsOf(t, c, ns); len(cl) != 0 {
			t.Fatalf("a paused cluster claimed %v", cl)
		}
		patchSpec(t, c, ns, "c", func(s *provisioningv1.ProvisionedClusterSpec) { s.Paused = false })
		waitCondition(t, c, ns, "c", provisioningv1.ControlPlaneReadyCondition, metav1.ConditionTrue, "", 20*time.Second)
	})

	t.Run("a failed upgrade halts the rollout and shows the failure", func(t *testing.T) {
		ns := "halt"
		sim := newSim(t, c, ns)
		sim.add("s-0", map[string]string{"role": "server"}, "10.0.7.10")
		sim.add("w-0", map[string]string{"role": "worker"}, "10.0.7.20")
		sim.add("w-1", map[string]string{"role": "worker"}, "10.0.7.21")
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1, ControlPlane: pool(1, map[string]string{"role": "server"}),
			Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: pool(2, map[string]string{"role": "worker"})}},
		}}); err != nil {
			t.Fatal(err)
		}
		waitCondition(t, c, ns, "c", provisioningv1.WorkersReadyCondition, metav1.ConditionTrue, "", 30*time.Second)
		sim.failNext("w-0", true)
		patchSpec(t, c, ns, "c", func(s *provisioningv1.ProvisionedClusterSpec) { s.Version = v2 })
		pc := waitCondition(t, c, ns, "c", provisioningv1.StalledCondition, metav1.ConditionTrue, provisioningv1.UpgradeFailedReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.StalledCondition).Message; !strings.Contains(msg, "w-0") || !strings.Contains(msg, "simulated") {
			t.Fatalf("Stalled message = %q", msg)
		}
		time.Sleep(2 * time.Second) // the rollout must stay halted
		w1 := get(t, c, ns, "w-1", &provisioningv1.ClusterMachine{})
		if w1.Spec.Version != v1 || w1.Status.Version != v1 {
			t.Fatalf("w-1 moved while the rollout was halted: spec %s, status %s", w1.Spec.Version, w1.Status.Version)
		}
		if s0 := get(t, c, ns, "s-0", &provisioningv1.ClusterMachine{}); s0.Status.Version != v2 {
			t.Fatalf("the server should have upgraded first: %s", s0.Status.Version)
		}
		w0 := get(t, c, ns, "w-0", &provisioningv1.ClusterMachine{})
		if cond := meta.FindStatusCondition(w0.Status.Conditions, provisioningv1.UpgradedCondition); cond == nil || cond.Reason != provisioningv1.UpgradeFailedReason {
			t.Fatalf("w-0 Upgraded = %+v", cond)
		}
	})

	t.Run("a server scaled down leaves etcd before it is reset; a failed leave keeps it and says why", func(t *testing.T) {
		ns := "leave"
		sim := newSim(t, c, ns)
		if err := c.Create(ctx, &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "resettable"},
			Spec: machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Reset: &machinesv1.ResetConfig{Enabled: true}}}}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			sim.add(fmt.Sprintf("s-%d", i), map[string]string{"role": "server"}, fmt.Sprintf("10.0.9.%d", 10+i))
			ctrltest.Eventually(t, 10*time.Second, func() error {
				inv := get(t, c, ns, fmt.Sprintf("s-%d", i), &machinesv1.MachineInventory{})
				inv.Spec.RegistrationRef = &machinesv1.ObjectReference{Name: "resettable"}
				return c.Update(ctx, inv)
			})
		}
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1, ControlPlane: pool(3, map[string]string{"role": "server"}),
		}}); err != nil {
			t.Fatal(err)
		}
		serversReady := func(n int32) {
			t.Helper()
			ctrltest.Eventually(t, 30*time.Second, func() error {
				if pc := get(t, c, ns, "c", &provisioningv1.ProvisionedCluster{}); pc.Status.ControlPlane.Ready != n {
					return fmt.Errorf("control plane %+v, want %d ready", pc.Status.ControlPlane, n)
				}
				return nil
			})
		}
		serversReady(3)
		leave, _ := render.LeaveEtcdPlan(render.Edgefleet)

		// The leaves fail: the machines stay claimed, their Kubernetes up,
		// and the cluster says why.
		sim.failNext("s-1", true)
		sim.failNext("s-2", true)
		patchSpec(t, c, ns, "c", func(s *provisioningv1.ProvisionedClusterSpec) { s.ControlPlane.Replicas = 1 })
		pc := waitCondition(t, c, ns, "c", provisioningv1.ReadyCondition, metav1.ConditionFalse, provisioningv1.LeaveEtcdFailedReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.ReadyCondition).Message; !strings.Contains(msg, "failed to leave etcd") || !strings.Contains(msg, "simulated") {
			t.Fatalf("Ready message = %q", msg)
		}
		for _, name := range []string{"s-1", "s-2"} {
			var sec corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sec); err != nil || string(sec.Data[nodeplan.SecretKey]) != string(leave) {
				t.Fatalf("%s's plan = %s (%v), want the leave-etcd release plan %s", name, sec.Data[nodeplan.SecretKey], err, leave)
			}
		}
		if claims := claimsOf(t, c, ns); claims["s-1"] != "c/control-plane" || claims["s-2"] != "c/control-plane" {
			t.Fatalf("a server was released although it did not leave etcd: claims %v", claims)
		}

		// The machines retry their plan (the planner backs off); once the
		// leave succeeds, and only then, they are reset (their inventories
		// deleted).
		before := len(sim.history())
		sim.failNext("s-1", false)
		sim.failNext("s-2", false)
		ctrltest.Eventually(t, 30*time.Second, func() error {
			for _, name := range []string{"s-1", "s-2"} {
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &machinesv1.MachineInventory{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%s not reset yet: %v", name, err)
				}
			}
			return nil
		})
		h := sim.history()[before:]
		for _, name := range []string{"s-1", "s-2"} {
			if !slices.Contains(h, name+"@(0 files)") {
				t.Fatalf("plan applications since the scale-down = %v: %s was reset without running its leave-etcd plan", h, name)
			}
		}
		if slices.Contains(h, "s-0@(0 files)") {
			t.Fatalf("the remaining server ran a release plan: %v", h)
		}
		serversReady(1)
	})

	t.Run("ClusterMachines for kstatus: work under way is Reconciling with Normal Events, a failed plan Stalled", func(t *testing.T) {
		ns := "kstatus"
		sim := newSim(t, c, ns)
		sim.add("s-0", map[string]string{"role": "server"}, "10.0.10.10")
		sim.add("w-0", map[string]string{"role": "worker"}, "10.0.10.20")
		sim.waitReady()
		sim.failNext("w-0", true)
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1, ControlPlane: pool(1, map[string]string{"role": "server"}),
			Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: pool(1, map[string]string{"role": "worker"})}},
		}}); err != nil {
			t.Fatal(err)
		}
		kstatusOf := func(name string) (status.Status, string) {
			cm := &provisioningv1.ClusterMachine{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil {
				return status.UnknownStatus, err.Error()
			}
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cm)
			if err != nil {
				t.Fatal(err)
			}
			res, err := status.Compute(&unstructured.Unstructured{Object: obj})
			if err != nil {
				t.Fatal(err)
			}
			return res.Status, res.Message
		}
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if st, msg := kstatusOf("s-0"); st != status.CurrentStatus {
				return fmt.Errorf("s-0: %s %s", st, msg)
			}
			if st, msg := kstatusOf("w-0"); st != status.FailedStatus || !strings.Contains(msg, "simulated") {
				return fmt.Errorf("w-0: %s %s", st, msg)
			}
			return nil
		})
		// The machines' Events: Bootstrapping (both went through it) is
		// progress, the failure a Warning.
		ctrltest.Eventually(t, 30*time.Second, func() error {
			var evs eventsv1.EventList
			if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
				return err
			}
			seen := map[string]string{}
			for _, e := range evs.Items {
				if e.Regarding.Kind != "ClusterMachine" {
					continue
				}
				key := e.Regarding.Name + "/" + e.Reason
				if e.Reason == provisioningv1.BootstrappingReason && e.Type != corev1.EventTypeNormal {
					t.Fatalf("%s: a %s Event for work under way: %s", key, e.Type, e.Note)
				}
				seen[key] = e.Type
			}
			if seen["s-0/"+provisioningv1.BootstrappingReason] != corev1.EventTypeNormal || seen["w-0/"+provisioningv1.BootstrapFailedReason] != corev1.EventTypeWarning {
				return fmt.Errorf("ClusterMachine Events so far: %v", seen)
			}
			return nil
		})
	})

	t.Run("an unknown version stalls with the versions available and adopts nothing", func(t *testing.T) {
		ns := "unknown"
		sim := newSim(t, c, ns)
		sim.add("m-0", map[string]string{"role": "server"}, "10.0.2.10")
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: "v1.99.0", ControlPlane: pool(1, map[string]string{"role": "server"}),
		}}); err != nil {
			t.Fatal(err)
		}
		pc := waitCondition(t, c, ns, "c", provisioningv1.StalledCondition, metav1.ConditionTrue, provisioningv1.UnknownVersionReason, 20*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.StalledCondition).Message; !strings.Contains(msg, v1+", "+v2) {
			t.Fatalf("Stalled message = %q", msg)
		}
		if !slices.Equal(pc.Status.AvailableVersions, []string{v1, v2}) {
			t.Fatalf("availableVersions = %v", pc.Status.AvailableVersions)
		}
		if cl := claimsOf(t, c, ns); len(cl) != 0 {
			t.Fatalf("claims = %v", cl)
		}
		// The API server refuses a version in another distro's spelling.
		bad := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: "v1.33.5+k3s1", ControlPlane: pool(2, map[string]string{"role": "server"}),
		}}
		err := c.Create(ctx, bad)
		if err == nil || !strings.Contains(err.Error(), "looks like v1.37.1") || !strings.Contains(err.Error(), "1 or 3 control-plane machines") {
			t.Fatalf("create with a k3s version and 2 servers for edgefleet: %v", err)
		}
	})

	t.Run("a machine lost mid-bootstrap is replaced", func(t *testing.T) {
		ns := "lost"
		sim := newSim(t, c, ns)
		sim.add("s-0", map[string]string{"role": "server"}, "10.0.3.10")
		sim.add("w-0", map[string]string{"role": "worker"}, "10.0.3.20")
		sim.add("w-1", map[string]string{"role": "worker"}, "10.0.3.21")
		sim.failNext("w-0", true) // never bootstraps
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1, ControlPlane: pool(1, map[string]string{"role": "server"}),
			Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: pool(1, map[string]string{"role": "worker"})}},
		}}); err != nil {
			t.Fatal(err)
		}
		pc := waitCondition(t, c, ns, "c", provisioningv1.StalledCondition, metav1.ConditionTrue, provisioningv1.BootstrapFailedReason, 30*time.Second)
		if msg := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.StalledCondition).Message; !strings.Contains(msg, "w-0") || !strings.Contains(msg, "simulated: kubelet did not become healthy") {
			t.Fatalf("Stalled message = %q", msg)
		}
		if err := c.Delete(ctx, get(t, c, ns, "w-0", &machinesv1.MachineInventory{})); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 30*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "w-0"}, &provisioningv1.ClusterMachine{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("ClusterMachine w-0 still there: %v", err)
			}
			if got := claimsOf(t, c, ns)["w-1"]; got != "c/default" {
				return fmt.Errorf("w-1 claimed by %q", got)
			}
			return nil
		})
		waitCondition(t, c, ns, "c", provisioningv1.WorkersReadyCondition, metav1.ConditionTrue, "", 30*time.Second)
	})

	t.Run("a plan held by an OS upgrade is written where that upgrade keeps the machine's own", func(t *testing.T) {
		ns := "held"
		sim := newSim(t, c, ns)
		sim.add("s-0", map[string]string{"role": "server"}, "10.0.4.10")
		var sec corev1.Secret
		upgradePlan := []byte(`{"instructions":[{"name":"os-upgrade","command":"/bin/true"}]}`)
		ctrltest.Eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s-0"}, &sec); err != nil {
				return err
			}
			sec.Annotations = map[string]string{managedosimage.AnnotationUpgrade: "os-v2"}
			sec.Data = map[string][]byte{nodeplan.SecretKey: upgradePlan, managedosimage.PreviousPlanKey: nil}
			return c.Update(ctx, &sec)
		})
		sim.waitReady()
		if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: v1, ControlPlane: pool(1, map[string]string{"role": "server"}),
		}}); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s-0"}, &sec); err != nil {
				return err
			}
			if string(sec.Data[nodeplan.SecretKey]) != string(upgradePlan) {
				return fmt.Errorf("the upgrade plan was replaced: %s", sec.Data[nodeplan.SecretKey])
			}
			if !strings.Contains(string(sec.Data[managedosimage.PreviousPlanKey]), "kubernetes") {
				return fmt.Errorf("no formation plan in %s", managedosimage.PreviousPlanKey)
			}
			return nil
		})
	})

	t.Run("two managers racing for the same machines never share one", func(t *testing.T) {
		// A second manager runs the same controller on the same API server.
		startManager(t, kube.RESTConfig(), newReconciler().SetupWithManager)
		ns := "race"
		sim := newSim(t, c, ns)
		for i := range 5 {
			sim.add(fmt.Sprintf("m-%d", i), map[string]string{"pool": "shared"}, fmt.Sprintf("10.0.5.%d", 10+i))
		}
		for _, name := range []string{"a", "b", "c"} {
			sim.waitReady()
			if err := c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: provisioningv1.ProvisionedClusterSpec{
				Distro: provisioningv1.DistroK3s, Version: "v1.33.5+k3s1", ControlPlane: pool(1, map[string]string{"pool": "shared"}),
				Workers: []provisioningv1.WorkerPool{{Name: "w", MachinePool: pool(1, map[string]string{"pool": "shared"})}},
			}}); err != nil {
				t.Fatal(err)
			}
		}
		// 6 machines wanted, 5 exist: every machine is taken exactly once,
		// one cluster waits for a machine, and every ClusterMachine matches
		// its inventory's claim.
		ctrltest.Eventually(t, 30*time.Second, func() error {
			claims := claimsOf(t, c, ns)
			var cms provisioningv1.ClusterMachineList
			if err := c.List(ctx, &cms, client.InNamespace(ns)); err != nil {
				return err
			}
			if len(claims) != 5 || len(cms.Items) != 5 {
				var msgs []string
				for _, name := range []string{"a", "b", "c"} {
					pc := get(t, c, ns, name, &provisioningv1.ProvisionedCluster{})
					msgs = append(msgs, fmt.Sprintf("%s: %v", name, meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.ReadyCondition)))
				}
				return fmt.Errorf("%d claims (%v), %d ClusterMachines, want 5 and 5; %s", len(claims), claims, len(cms.Items), strings.Join(msgs, "; "))
			}
			for _, cm := range cms.Items {
				if claims[cm.Name] != cm.Spec.ClusterName+"/"+cm.Spec.Pool {
					return fmt.Errorf("ClusterMachine %s is %s/%s but its inventory is claimed by %q", cm.Name, cm.Spec.ClusterName, cm.Spec.Pool, claims[cm.Name])
				}
			}
			waiting := 0
			for _, name := range []string{"a", "b", "c"} {
				pc := get(t, c, ns, name, &provisioningv1.ProvisionedCluster{})
				if cond := meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.ReadyCondition); cond != nil && cond.Reason == provisioningv1.WaitingForMachinesReason {
					waiting++
					// Every machine matches and is taken: the message counts
					// other clusters' claims (not read per reconcile) too.
					if !strings.Contains(cond.Message, "(0 matching not Ready, 5 in other clusters or pools)") {
						return fmt.Errorf("cluster %s waits with %q, want 5 in other clusters or pools", name, cond.Message)
					}
				}
			}
			if waiting != 1 {
				return fmt.Errorf("%d clusters wait for machines, want 1", waiting)
			}
			return nil
		})
		// A claim whose ClusterMachine never came (its claimer died between
		// the two phases) is released after the grace period.
		inv := &machinesv1.MachineInventory{}
		sim.add("orphan", map[string]string{"pool": "none"}, "10.0.5.99")
		ctrltest.Eventually(t, 10*time.Second, func() error {
			inv = get(t, c, ns, "orphan", inv)
			inv.Labels[provisioningv1.ClusterLabel], inv.Labels[provisioningv1.PoolLabel] = "a", "w"
			inv.Annotations = map[string]string{provisioningv1.ClaimedAtAnnotation: time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}
			return c.Update(ctx, inv)
		})
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if got := claimsOf(t, c, ns)["orphan"]; got != "" {
				return fmt.Errorf("orphan still claimed by %q", got)
			}
			return nil
		})
		// A claim of a cluster that does not exist (deleted without its
		// finalizer, or written by hand) is released once older than the
		// grace period: the claim's event goes to the missing cluster.
		sim.add("stale", map[string]string{"pool": "none"}, "10.0.5.98")
		ctrltest.Eventually(t, 10*time.Second, func() error {
			inv = get(t, c, ns, "stale", &machinesv1.MachineInventory{})
			inv.Labels[provisioningv1.ClusterLabel], inv.Labels[provisioningv1.PoolLabel] = "gone", "w"
			inv.Annotations = map[string]string{provisioningv1.ClaimedAtAnnotation: time.Now().UTC().Format(time.RFC3339)}
			return c.Update(ctx, inv)
		})
		if got := claimsOf(t, c, ns)["stale"]; got != "gone/w" {
			t.Fatalf("stale claim %q released before the grace period, want gone/w", got)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if got := claimsOf(t, c, ns)["stale"]; got != "" {
				return fmt.Errorf("stale still claimed by %q", got)
			}
			return nil
		})
	})
}

func patchSpec(t *testing.T, c client.Client, ns, name string, change func(*provisioningv1.ProvisionedClusterSpec)) {
	t.Helper()
	ctrltest.Eventually(t, 10*time.Second, func() error {
		pc := get(t, c, ns, name, &provisioningv1.ProvisionedCluster{})
		change(&pc.Spec)
		return c.Update(context.Background(), pc)
	})
}
