package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const (
	orderMachinePlan = orderSeedImage + 6
	planMachines     = 1000
)

// benchPlan is a machine plan of one file and one instruction, version v.
func benchPlan(v int) []byte {
	return []byte(fmt.Sprintf(`{"files":[{"path":"/etc/bench/version","content":"%s","permissions":"0644"}],"instructions":[{"name":"reload","command":"/bin/true","args":["%d"]}]}`,
		"dmVyc2lvbg==", v))
}

// TestMachinePlanChange1000 changes the plan of 1,000 simulated machines
// and times until the manager reports every one applied (PlanApplied on each
// MachineInventory, from the checksum it computes out of the plan Secret and
// the one the machine reports). The machines are simulated by the benchmark:
// one watch over the namespace's plan Secrets stands in for the machines'
// 1,000 own watches, and each machine reports the new checksum with the
// server-side apply of status.plan the node agent sends (field manager
// edgefleet-node). The clock runs from the first plan Secret write to the
// last PlanApplied.
func TestMachinePlanChange1000(t *testing.T) {
	requireBench(t)
	ctx := context.Background()
	m := startQuietManager(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: m.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := "plans"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	parallel(t, planMachines, func(i int) error {
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("m-%04d", i)}}
		if err := c.Create(ctx, inv); err != nil {
			return err
		}
		s := machineregistration.PlanSecret(inv)
		if err := machineregistration.OwnFor(inv, s, c.Scheme()); err != nil {
			return err
		}
		s.Data = map[string][]byte{nodeplan.SecretKey: benchPlan(1)}
		return client.IgnoreAlreadyExists(c.Create(ctx, s))
	})

	// The simulated machines: report the checksum of every plan they see.
	simCtx, stop := context.WithCancel(ctx)
	defer stop()
	reported := sync.Map{} // secret name → checksum reported
	var reports atomic.Int64
	report := func(secret *corev1.Secret) {
		inv := strings.TrimSuffix(secret.Name, "-plan")
		if owner := metav1.GetControllerOf(secret); owner != nil {
			inv = owner.Name
		}
		sum := nodeplan.Checksum(secret.Data[nodeplan.SecretKey])
		if prev, ok := reported.Load(secret.Name); ok && prev == sum {
			return
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": machinesv1.GroupVersion.String(), "kind": "MachineInventory",
			"metadata": map[string]any{"name": inv, "namespace": ns},
			"status": map[string]any{
				"plan":     map[string]any{"appliedChecksum": sum, "lastAppliedTime": time.Now().UTC().Format(time.RFC3339)},
				"lastSeen": time.Now().UTC().Format(time.RFC3339),
			},
		}}
		for simCtx.Err() == nil {
			if err := c.Status().Patch(simCtx, u, client.Apply, client.FieldOwner("edgefleet-node"), client.ForceOwnership); err == nil {
				reported.Store(secret.Name, sum)
				reports.Add(1)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	w, err := cs.CoreV1().Secrets(ns).Watch(simCtx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan *corev1.Secret, planMachines)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				report(s)
			}
		}()
	}
	go func() {
		defer close(work)
		for ev := range w.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) && s.Data[nodeplan.SecretKey] != nil {
				work <- s
			}
		}
	}()
	applied := func(v int) (int, string) {
		want := nodeplan.Checksum(benchPlan(v))
		var list machinesv1.MachineInventoryList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return 0, err.Error()
		}
		n := 0
		for _, inv := range list.Items {
			if inv.Status.Plan.Checksum == want && inv.Status.Plan.State == machinesv1.PlanApplied {
				n++
			}
		}
		return n, fmt.Sprintf("%d/%d applied", n, planMachines)
	}
	waitProgress(t, 10*time.Minute, "the first plan applied everywhere", func() (bool, string) {
		n, p := applied(1)
		return n == planMachines, p
	})
	t.Logf("%d simulated machines run plan 1", planMachines)
	time.Sleep(5 * time.Second) // let the manager settle

	procs0 := sampleProcs(m.DataDir)
	api0, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reports0 := reports.Load()
	t0 := time.Now()
	parallel(t, planMachines, func(i int) error {
		var s corev1.Secret
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("m-%04d", i)}}
		key := client.ObjectKeyFromObject(machineregistration.PlanSecret(inv))
		if err := c.Get(ctx, key, &s); err != nil {
			return err
		}
		s.Data[nodeplan.SecretKey] = benchPlan(2)
		return c.Update(ctx, &s)
	})
	written := time.Since(t0)
	waitProgress(t, 10*time.Minute, "the changed plan reported applied everywhere", func() (bool, string) {
		n, p := applied(2)
		return n == planMachines, p
	})
	total := time.Since(t0)
	procs1 := sampleProcs(m.DataDir)
	api1, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	w.Stop()
	wg.Wait()
	mgrCPU := procs1["edgefleet"].cpuSec - procs0["edgefleet"].cpuSec
	writes := (api1.etcdWrites - api0.etcdWrites) / planMachines
	t.Logf("plan change on %d machines: all applied in %s (Secrets written in %s); manager CPU %.1f s, peak RSS %s; etcd writes per machine %.1f (1 Secret write + %.1f machine reports + the manager's status writes); requests: %s",
		planMachines, secs(total), secs(written), mgrCPU, mib(procs1["edgefleet"].hwmKiB), writes, float64(reports.Load()-reports0)/planMachines, topRequests(api0, api1, 8))

	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f("## Machine plan change\n\n")
	f("The plan of %d simulated machines changes (one plan Secret write each); the clock runs from the first write to the manager reporting the last machine `PlanApplied`. ", planMachines)
	f("The machines are simulated by the benchmark: one watch over the plan Secrets stands in for their own watches, and each reports the new checksum with the node agent's server-side apply of `status.plan`. ")
	f("Etcd writes per machine count the plan write, the machine's report and the manager's status write.\n\n")
	f("| machines | all applied | Secrets written | manager CPU | manager peak RSS | etcd writes / machine |\n|---|---|---|---|---|---|\n")
	f("| %d | %s | %s | %.1f s | %s | %.1f |\n", planMachines, secs(total), secs(written), mgrCPU, mib(procs1["edgefleet"].hwmKiB), writes)
	addSection(orderMachinePlan, b.String())
}
