package bench

import (
	"context"
	"fmt"
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
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const (
	orderOSRollout     = orderSeedImage + 5
	rolloutMachines    = 1000
	rolloutConcurrency = 50
	// simulatedUpgrade is how long each simulated machine takes from seeing
	// its upgrade plan to reporting the new OS confirmed.
	simulatedUpgrade = 2 * time.Second
	rolloutOldImage  = "registry.example.com/os:v1"
	rolloutNewImage  = "registry.example.com/os:v2"
)

// TestManagedOSImageRollout1000 rolls an OS image out to 1,000 simulated
// machines at concurrency 50 through the real manager. The machines are
// simulated by this test (no node agent runs): each sees its upgrade plan by
// polling the plan Secrets and, simulatedUpgrade later, writes what a
// machine's node agent reports after a confirmed upgrade. The ideal time is
// ceil(1000/50) × simulatedUpgrade; the overhead over it is the controller's.
func TestManagedOSImageRollout1000(t *testing.T) {
	requireBench(t)
	ctx := context.Background()
	m := startQuietManager(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// The simulated machines are many clients: no client-side rate limit.
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: m.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := "rollout"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	sel := map[string]string{"site": "bench"}
	parallel(t, rolloutMachines, func(i int) error {
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("m-%04d", i), Labels: sel}}
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
		inv.Status.OS = machinesv1.OSStatus{Image: rolloutOldImage, ActiveSlot: "a", BootedSlot: "a"}
		return c.Status().Update(ctx, inv)
	})
	t.Logf("%d simulated machines created", rolloutMachines)

	// The simulated machines.
	simCtx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	seen := map[string]time.Time{}
	maxInFlight := 0
	go func() {
		for simCtx.Err() == nil {
			var list corev1.SecretList
			if err := c.List(simCtx, &list, client.InNamespace(ns)); err == nil {
				inFlight := 0
				for _, s := range list.Items {
					if s.Annotations["machines.edgefleet.io/os-upgrade"] == "" {
						continue
					}
					inFlight++
					mu.Lock()
					_, ok := seen[s.Name]
					if !ok {
						seen[s.Name] = time.Now()
					}
					mu.Unlock()
					if !ok {
						name, checksum := s.Name, nodeplan.Checksum(s.Data[nodeplan.SecretKey])
						time.AfterFunc(simulatedUpgrade, func() { simulateUpgraded(simCtx, c, ns, name, checksum) })
					}
				}
				mu.Lock()
				maxInFlight = max(maxInFlight, inFlight)
				mu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	procs0 := sampleProcs(m.DataDir)
	api0, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	mosi := &machinesv1.ManagedOSImage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "v2"}, Spec: machinesv1.ManagedOSImageSpec{
		OSImage: rolloutNewImage, Concurrency: rolloutConcurrency, Targets: machinesv1.ManagedOSImageTargets{Selector: &metav1.LabelSelector{MatchLabels: sel}},
	}}
	if err := c.Create(ctx, mosi); err != nil {
		t.Fatal(err)
	}
	deadline := t0.Add(5 * time.Minute)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(mosi), mosi); err != nil {
			t.Fatal(err)
		}
		if meta.IsStatusConditionTrue(mosi.Status.Conditions, machinesv1.ReadyCondition) {
			break
		}
		if meta.IsStatusConditionTrue(mosi.Status.Conditions, machinesv1.StalledCondition) || time.Now().After(deadline) {
			t.Fatalf("rollout not complete: %+v", mosi.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	total := time.Since(t0)
	stop()
	procs1 := sampleProcs(m.DataDir)
	api1, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waves := (rolloutMachines + rolloutConcurrency - 1) / rolloutConcurrency
	ideal := time.Duration(waves) * simulatedUpgrade
	mu.Lock()
	peak := maxInFlight
	mu.Unlock()
	if peak > rolloutConcurrency {
		t.Errorf("%d machines upgrading at once, concurrency is %d", peak, rolloutConcurrency)
	}
	mgrCPU := procs1["edgefleet"].cpuSec - procs0["edgefleet"].cpuSec
	writes := (api1.etcdWrites - api0.etcdWrites) / rolloutMachines
	t.Logf("rollout of %d machines at concurrency %d: %s (ideal %s, %d waves × %s); manager CPU %.1f s, peak RSS %s; etcd writes per machine %.1f; peak in flight seen %d; requests: %s",
		rolloutMachines, rolloutConcurrency, secs(total), secs(ideal), waves, secs(simulatedUpgrade), mgrCPU, mib(procs1["edgefleet"].hwmKiB), writes, peak, topRequests(api0, api1, 8))

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## OS rollout (ManagedOSImage)\n\n")
	w("One ManagedOSImage over %d simulated machines at concurrency %d through the real manager. The machines are simulated by the benchmark: ", rolloutMachines, rolloutConcurrency)
	w("each sees its upgrade plan (polling the plan Secrets every 200 ms) and %s later writes the status a confirmed upgrade reports. ", secs(simulatedUpgrade))
	w("The clock runs from creating the ManagedOSImage to its `Ready`.\n\n")
	w("| machines | concurrency | total | ideal (waves × upgrade) | manager CPU | manager peak RSS | etcd writes / machine |\n|---|---|---|---|---|---|---|\n")
	w("| %d | %d | %s | %s | %.1f s | %s | %.1f |\n", rolloutMachines, rolloutConcurrency, secs(total), secs(ideal), mgrCPU, mib(procs1["edgefleet"].hwmKiB), writes)
	addSection(orderOSRollout, b.String())
}

// simulateUpgraded writes what a machine's node agent reports after a
// confirmed upgrade: the new OS, the result, and the upgrade plan applied.
func simulateUpgraded(ctx context.Context, c client.Client, ns, name, checksum string) {
	for ctx.Err() == nil {
		var inv machinesv1.MachineInventory
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &inv); err != nil {
			return
		}
		inv.Status.OS = machinesv1.OSStatus{Image: rolloutNewImage, ActiveSlot: "b", BootedSlot: "b",
			LastUpgrade: &machinesv1.OSUpgradeStatus{Image: rolloutNewImage, Slot: "b", Result: machinesv1.OSUpgradeSucceeded, Time: metav1.Now()}}
		inv.Status.Plan.AppliedChecksum = checksum
		if err := c.Status().Update(ctx, &inv); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
