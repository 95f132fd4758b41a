package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const (
	orderFormation = orderSeedImage + 8
	// formationClusters is the default scale: 100 clusters of 1 server and
	// 2 workers (EDGEFLEET_BENCH_FORMATION_CLUSTERS overrides it).
	formationClusters = 100
	formationVersion  = "v1.37.1"
	// simWorkers is how many simulated machines report a plan at once.
	simWorkers = 32
)

// TestFormation100Clusters forms 100 edgefleet-distro clusters (1 server
// + 2 workers each) from 300 simulated machines through the real manager.
// Adoption, ClusterMachines, PKI, join tokens, plans and status are real;
// the machines are simulated by this benchmark (no node agent runs): each
// sees its plan by polling the plan Secrets every 200 ms and reports it
// applied with a healthy kubelet probe at once (simWorkers at a time). The
// clock runs from creating the ProvisionedClusters to every one reporting
// ControlPlaneReady and WorkersReady (the fleet join is not simulated: no
// agent registers).
func TestFormation100Clusters(t *testing.T) {
	requireBench(t)
	ctx := context.Background()
	clusters := formationClusters
	if v, err := strconv.Atoi(os.Getenv("EDGEFLEET_BENCH_FORMATION_CLUSTERS")); err == nil && v > 0 {
		clusters = v
	}
	machines := clusters * 3
	catalog := filepath.Join(t.TempDir(), "releases.yaml")
	if err := os.WriteFile(catalog, []byte("edgefleet:\n  "+formationVersion+": {image: registry.example.com/kube:"+formationVersion+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startQuietManager(t, "--kubernetes-releases", catalog)
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: m.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := "formation"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	parallel(t, machines, func(i int) error {
		role := "worker"
		if i%3 == 0 {
			role = "server"
		}
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("m-%04d", i),
			Labels: map[string]string{"site": fmt.Sprintf("s-%03d", i/3), "role": role}}}
		if err := c.Create(ctx, inv); err != nil {
			return err
		}
		s := machineregistration.PlanSecret(inv)
		if err := machineregistration.OwnFor(inv, s, c.Scheme()); err != nil {
			return err
		}
		if err := client.IgnoreAlreadyExists(c.Create(ctx, s)); err != nil {
			return err
		}
		// 10.0.0.1 upwards; each octet stays in 0..255 (the manager rejects
		// an address such as 10.0.0.256 and that cluster never forms).
		addr := fmt.Sprintf("10.%d.%d.%d", (i+1)>>16&255, (i+1)>>8&255, (i+1)&255)
		// A patch, not an update: the manager's controller may already have
		// written the new inventory (its finalizer), and a conflict here
		// would only be the benchmark's own race.
		before := inv.DeepCopy()
		inv.Status.Network = machinesv1.NetworkStatus{PrimaryAddress: addr, Addresses: []string{addr}}
		inv.Status.Conditions = []metav1.Condition{{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: "Registered", Message: "simulated", LastTransitionTime: metav1.Now()}}
		return c.Status().Patch(ctx, inv, client.MergeFrom(before))
	})
	// The simulated node agents.
	simCtx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	applied := map[string]string{}
	simWrites := 0
	go func() {
		for simCtx.Err() == nil {
			var list corev1.SecretList
			if err := c.List(simCtx, &list, client.InNamespace(ns)); err == nil {
				// Machines act independently: the new plans are reported
				// applied concurrently (one at a time made the benchmark,
				// not the manager, the bottleneck of a plan round).
				sem := make(chan struct{}, simWorkers)
				var wg sync.WaitGroup
				for _, s := range list.Items {
					raw := s.Data[nodeplan.SecretKey]
					if len(raw) == 0 || s.Type != machineregistration.PlanSecret(&machinesv1.MachineInventory{}).Type {
						continue
					}
					sum := nodeplan.Checksum(raw)
					mu.Lock()
					done := applied[s.Name] == sum
					mu.Unlock()
					if done {
						continue
					}
					sem <- struct{}{}
					wg.Go(func() {
						defer func() { <-sem }()
						if simulateApplied(simCtx, c, ns, s.Name, sum) != nil {
							return
						}
						mu.Lock()
						applied[s.Name] = sum
						simWrites++
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// Wait until the MachineInventory controller has judged every machine Ready.
	waitProgress(t, 5*time.Minute, "inventories Ready", func() (bool, string) {
		var list machinesv1.MachineInventoryList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		ready, why := 0, ""
		for _, inv := range list.Items {
			if meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) {
				ready++
			} else if c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.ReadyCondition); c != nil {
				why = c.Message
			}
		}
		return ready == machines, fmt.Sprintf("%d/%d inventories Ready (%s)", ready, machines, why)
	})
	t.Logf("%d simulated machines registered and Ready", machines)

	procs0 := sampleProcs(m.DataDir)
	api0, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	sim0 := simWrites
	mu.Unlock()
	t0 := time.Now()
	parallel(t, clusters, func(i int) error {
		site := fmt.Sprintf("s-%03d", i)
		return c.Create(ctx, &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c-" + site}, Spec: provisioningv1.ProvisionedClusterSpec{
			Distro: provisioningv1.DistroEdgefleet, Version: formationVersion,
			ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"site": site, "role": "server"}}},
			Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: provisioningv1.MachinePool{Replicas: 2,
				MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"site": site, "role": "worker"}}}}},
		}})
	})
	var firstFormed time.Duration
	waitProgress(t, 10*time.Minute, "clusters formed", func() (bool, string) {
		var list provisioningv1.ProvisionedClusterList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		formed := 0
		for _, pc := range list.Items {
			if meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.ControlPlaneReadyCondition) &&
				meta.IsStatusConditionTrue(pc.Status.Conditions, provisioningv1.WorkersReadyCondition) {
				formed++
			}
		}
		if formed > 0 && firstFormed == 0 {
			firstFormed = time.Since(t0)
		}
		return formed == clusters, fmt.Sprintf("%d/%d clusters formed", formed, clusters)
	})
	total := time.Since(t0)
	stop()
	procs1 := sampleProcs(m.DataDir)
	api1, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	sim := simWrites - sim0
	mu.Unlock()
	mgrCPU := procs1["edgefleet"].cpuSec - procs0["edgefleet"].cpuSec
	writes := (api1.etcdWrites - api0.etcdWrites) / float64(machines)
	// The manager's own writes: all writes minus the simulated machines'
	// status reports (one per plan applied).
	mgrWrites := (api1.etcdWrites - api0.etcdWrites - float64(sim)) / float64(machines)
	t.Logf("formation of %d clusters from %d machines: all formed after %s (first after %s); manager CPU %.1f s, peak RSS %s; etcd writes per machine %.1f (manager's %.1f); requests: %s",
		clusters, machines, secs(total), secs(firstFormed), mgrCPU, mib(procs1["edgefleet"].hwmKiB), writes, mgrWrites, topRequests(api0, api1, 8))

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Cluster formation (ProvisionedCluster)\n\n")
	w("%d edgefleet-distro clusters (1 server + 2 workers each) formed from %d simulated machines through the real manager: adoption, ClusterMachines, cluster PKI, join tokens, plans and status are real. ", clusters, machines)
	w("The machines are simulated by the benchmark: each polls the plan Secrets every 200 ms and reports a new plan applied with a healthy kubelet probe at once (32 machines at a time). ")
	w("The clock runs from creating the ProvisionedClusters to every one reporting ControlPlaneReady and WorkersReady (joining the fleet is not simulated).\n\n")
	w("| clusters | machines | all formed | first formed | manager CPU | manager peak RSS | etcd writes / machine (manager's) |\n|---|---|---|---|---|---|---|\n")
	w("| %d | %d | %s | %s | %.1f s | %s | %.1f (%.1f) |\n", clusters, machines, secs(total), secs(firstFormed), mgrCPU, mib(procs1["edgefleet"].hwmKiB), writes, mgrWrites)
	addSection(orderFormation, b.String())
}

// simulateApplied writes what a machine's node agent reports once it
// applied plan sum: the checksum and a healthy kubelet probe.
func simulateApplied(ctx context.Context, c client.Client, ns, name, sum string) error {
	var inv machinesv1.MachineInventory
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &inv); err != nil {
		return err
	}
	now := metav1.Now()
	inv.Status.Plan.AppliedChecksum, inv.Status.Plan.LastAppliedTime = sum, &now
	inv.Status.Plan.Probes = []machinesv1.PlanProbeStatus{{Name: render.ProbeKubelet, Healthy: true, SuccessCount: 1}}
	return c.Status().Update(ctx, &inv)
}
