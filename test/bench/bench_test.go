// Package bench measures edgefleet at fleet scale: a real manager on its
// embedded kube-apiserver + etcd, N simulated clusters whose agents run in
// this process with a dry-run applier (see dryRunAgents), and B bundles of a
// ConfigMap and a Deployment targeting every cluster.
//
// It only runs with EDGEFLEET_BENCH=1 (`make bench`), so `go test ./...`
// skips it. Environment:
//
//	EDGEFLEET_BENCH_SCENARIOS  clusters×bundles list, default "50x50" (the
//	                           short run); also "500x10", "500x50", "5000x1"
//	EDGEFLEET_BENCH_OUT        write the results as Markdown to this file
//	EDGEFLEET_BENCH_CMD        the command line recorded in that file
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/test/harness"
)

const (
	benchNS      = "fleet-default"
	writeWorkers = 16
	agentWorkers = 64
)

// scenario is one fleet shape.
type scenario struct{ clusters, bundles int }

func (s scenario) String() string { return fmt.Sprintf("%d×%d", s.clusters, s.bundles) }

// result is what one scenario measured.
type result struct {
	scenario
	registerDur           time.Duration // Cluster creates until every namespace exists
	tBD, tReady           time.Duration
	managerCPU, apiCPU    float64 // seconds from first Bundle create to all ready
	etcdCPU               float64
	benchCPU              float64 // this process: simulated agents, observer, writes
	managerHWM, apiHWM    int64   // KiB, peak over the process lifetime
	etcdHWM               int64
	bdWrites              map[string]float64
	apiRequests, etcdWrts float64
	dbBytes               float64
	// After every bundle's content changed: until all N×B deployments run
	// the new ID and every Bundle is N/N ready again.
	tChange                 time.Duration
	changeManagerCPU        float64
	changeAPICPU            float64
	changeBDUpdates         float64
	idleRSS, idleAPIRSS     int64   // KiB, VmRSS after the idle window
	idleManagerCPUPerMinute float64 // CPU seconds per minute while idle
}

// idleWindow is how long the fleet sits idle before its RSS is read.
const idleWindow = 30 * time.Second

func parseScenarios(s string) ([]scenario, error) {
	var out []scenario
	for _, f := range strings.Split(s, ",") {
		c, b, ok := strings.Cut(strings.TrimSpace(strings.ReplaceAll(f, "×", "x")), "x")
		n, err1 := strconv.Atoi(c)
		m, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n < 1 || m < 1 {
			return nil, fmt.Errorf("EDGEFLEET_BENCH_SCENARIOS: %q is not CLUSTERSxBUNDLES (e.g. 50x50)", f)
		}
		out = append(out, scenario{n, m})
	}
	return out, nil
}

func TestFleetScale(t *testing.T) {
	requireBench(t)
	// The simulated agents' controller-runtime logs are noise here.
	ctrllog.SetLogger(logr.Discard())
	spec := os.Getenv("EDGEFLEET_BENCH_SCENARIOS")
	if spec == "" {
		spec = "50x50"
	}
	scenarios, err := parseScenarios(spec)
	if err != nil {
		t.Fatal(err)
	}
	var results []result
	for _, sc := range scenarios {
		t.Run(strings.ReplaceAll(sc.String(), "×", "x"), func(t *testing.T) {
			r := runScenario(t, sc)
			t.Logf("%s: register %s, T_bd %s, T_ready %s, manager CPU %.1fs peak RSS %d MiB, kube-apiserver peak RSS %d MiB, BD writes %v; change → ready %s; idle RSS manager %d MiB, apiserver %d MiB",
				sc, r.registerDur, r.tBD, r.tReady, r.managerCPU, r.managerHWM>>10, r.apiHWM>>10, r.bdWrites, r.tChange, r.idleRSS>>10, r.idleAPIRSS>>10)
			results = append(results, r)
		})
	}
	addSection(orderFleet, fleetMarkdown(results, spec))
}

func runScenario(t *testing.T, sc scenario) result {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := result{scenario: sc}
	setPollInterval(sc.clusters * sc.bundles)
	prof := newProfiler(t)
	defer prof.wait()
	m := harness.StartManager(t, harness.ManagerOptions{Args: append([]string{"--log-level", "info"}, prof.managerArgs()...)})
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}); err != nil {
		t.Fatal(err)
	}
	watch := startObserver(ctx, t, cfg)

	start := time.Now()
	parallel(t, sc.clusters, func(i int) error {
		return c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("sim-%05d", i), Namespace: benchNS,
			Labels: map[string]string{"bench": "fleet", "shard": strconv.Itoa(i % 10)},
		}})
	})
	var namespaces []string
	waitProgress(t, 10*time.Minute, "every Cluster's status.namespace", func() (bool, string) {
		var list fleetv1.ClusterList
		if err := watch.List(ctx, &list, client.InNamespace(benchNS), client.UnsafeDisableDeepCopy); err != nil {
			return false, err.Error()
		}
		namespaces = namespaces[:0]
		for _, cl := range list.Items {
			if cl.Status.Namespace != "" {
				namespaces = append(namespaces, cl.Status.Namespace)
			}
		}
		return len(namespaces) == sc.clusters, fmt.Sprintf("%d/%d namespaces", len(namespaces), sc.clusters)
	})
	res.registerDur = time.Since(start)

	// The agents connect now and report once agentsStart is closed.
	agentsStart := make(chan struct{})
	connectStart := time.Now()
	agentsDone, err := dryRunAgents(ctx, cfg, namespaces, agentWorkers, agentsStart)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d simulated agents connected (watches open) in %s", sc.clusters, secs(time.Since(connectStart)))

	// Content upload is part of `edgefleet apply`, before any Bundle exists.
	ids := make([]string, sc.bundles)
	parallel(t, sc.bundles, func(i int) error {
		id, err := content.Store(ctx, c, benchManifest(i))
		ids[i] = id
		return err
	})

	self0, _ := readProc(os.Getpid())
	procs0 := sampleProcs(m.DataDir)
	api0, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bd0, err := scrapeManager(m)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	prof.capture(ctx, t, cfg, strings.ReplaceAll(sc.String(), "×", "x")+"-bd")
	parallel(t, sc.bundles, func(i int) error {
		return c.Create(ctx, &fleetv1.Bundle{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%04d", i), Namespace: benchNS},
			Spec: fleetv1.BundleSpec{
				BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: fmt.Sprintf("app-%04d", i)},
				ContentsID:              ids[i],
				Targets:                 []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
			},
		})
	})
	want := sc.clusters * sc.bundles
	waitProgress(t, 30*time.Minute, fmt.Sprintf("%d BundleDeployments with a deploymentID", want), func() (bool, string) {
		var list fleetv1.BundleDeploymentList
		if err := watch.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return false, err.Error()
		}
		n := 0
		for _, bd := range list.Items {
			if bd.Spec.DeploymentID != "" {
				n++
			}
		}
		return n == want, fmt.Sprintf("%d/%d", n, want)
	})
	res.tBD = time.Since(t0)
	if procsBD := sampleProcs(m.DataDir); true {
		self, _ := readProc(os.Getpid())
		t.Logf("CPU during T_bd (%s): manager %.1f s, kube-apiserver %.1f s, etcd %.1f s, kube-controller-manager %.1f s, bench %.1f s",
			secs(res.tBD), procsBD["edgefleet"].cpuSec-procs0["edgefleet"].cpuSec, procsBD["kube-apiserver"].cpuSec-procs0["kube-apiserver"].cpuSec,
			procsBD["etcd"].cpuSec-procs0["etcd"].cpuSec, procsBD["kube-controller-manager"].cpuSec-procs0["kube-controller-manager"].cpuSec, self.cpuSec-self0.cpuSec)
	}

	prof.wait()
	t1 := time.Now()
	prof.capture(ctx, t, cfg, strings.ReplaceAll(sc.String(), "×", "x")+"-ready")
	close(agentsStart)
	waitProgress(t, 30*time.Minute, fmt.Sprintf("%d Bundles %d/%d ready", sc.bundles, sc.clusters, sc.clusters), func() (bool, string) {
		select {
		case err := <-agentsDone:
			t.Fatalf("simulated agents stopped: %v", err)
		default:
		}
		var list fleetv1.BundleList
		if err := watch.List(ctx, &list, client.InNamespace(benchNS), client.UnsafeDisableDeepCopy); err != nil {
			return false, err.Error()
		}
		n := 0
		for _, b := range list.Items {
			if b.Status.ReadyClusters == int32(sc.clusters) && b.Status.DesiredReadyClusters == int32(sc.clusters) {
				n++
			}
		}
		return n == sc.bundles, fmt.Sprintf("%d/%d bundles ready, %d/%d deployments ready", n, sc.bundles, readyDeployments(ctx, watch, nil), want)
	})
	res.tReady = time.Since(t1)

	self1, _ := readProc(os.Getpid())
	res.benchCPU = self1.cpuSec - self0.cpuSec
	procs1 := sampleProcs(m.DataDir)
	api1, err := scrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bd1, err := scrapeManager(m)
	if err != nil {
		t.Fatal(err)
	}
	res.managerCPU = procs1["edgefleet"].cpuSec - procs0["edgefleet"].cpuSec
	res.apiCPU = procs1["kube-apiserver"].cpuSec - procs0["kube-apiserver"].cpuSec
	res.etcdCPU = procs1["etcd"].cpuSec - procs0["etcd"].cpuSec
	res.managerHWM, res.apiHWM, res.etcdHWM = procs1["edgefleet"].hwmKiB, procs1["kube-apiserver"].hwmKiB, procs1["etcd"].hwmKiB
	res.bdWrites = map[string]float64{}
	for op, v := range bd1 {
		res.bdWrites[op] = v - bd0[op]
	}
	t.Logf("requests from the first Bundle create until ready: %s", topRequests(api0, api1, 12))
	t.Logf("mean latencies: %s", latencies(api0, api1))
	res.apiRequests = api1.requests - api0.requests
	res.etcdWrts = api1.etcdWrites - api0.etcdWrites
	res.dbBytes = api1.dbBytes

	// Change every bundle's content, as a git push would; the agents are
	// still running.
	newIDs := make([]string, sc.bundles)
	parallel(t, sc.bundles, func(i int) error {
		m := benchManifest(i)
		m.Resources[0].Content += "  revision: \"2\"\n"
		id, err := content.Store(ctx, c, m)
		newIDs[i] = id
		return err
	})
	procs2 := sampleProcs(m.DataDir)
	t2 := time.Now()
	prof.capture(ctx, t, cfg, strings.ReplaceAll(sc.String(), "×", "x")+"-change")
	parallel(t, sc.bundles, func(i int) error {
		var b fleetv1.Bundle
		if err := c.Get(ctx, client.ObjectKey{Namespace: benchNS, Name: fmt.Sprintf("app-%04d", i)}, &b); err != nil {
			return err
		}
		b.Spec.ContentsID = newIDs[i]
		return c.Update(ctx, &b)
	})
	isNew := map[string]bool{}
	for _, id := range newIDs {
		isNew[id] = true
	}
	waitProgress(t, 30*time.Minute, fmt.Sprintf("%d BundleDeployments applied with the new content and %d Bundles ready", want, sc.bundles), func() (bool, string) {
		n := readyDeployments(ctx, watch, isNew)
		if n != want {
			return false, fmt.Sprintf("%d/%d deployments ready with the new content", n, want)
		}
		var bundles fleetv1.BundleList
		if err := watch.List(ctx, &bundles, client.InNamespace(benchNS), client.UnsafeDisableDeepCopy); err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, b := range bundles.Items {
			if b.Status.ObservedGeneration == b.Generation && b.Status.ReadyClusters == int32(sc.clusters) && b.Status.DesiredReadyClusters == int32(sc.clusters) {
				ready++
			}
		}
		return ready == sc.bundles, fmt.Sprintf("%d/%d bundles ready", ready, sc.bundles)
	})
	res.tChange = time.Since(t2)
	if api3, err := scrapeAPIServer(ctx, cfg); err == nil {
		t.Logf("requests during the change: %s", topRequests(api1, api3, 12))
		t.Logf("mean latencies during the change: %s", latencies(api1, api3))
	}
	procs3 := sampleProcs(m.DataDir)
	bd3, err := scrapeManager(m)
	if err != nil {
		t.Fatal(err)
	}
	res.changeManagerCPU = procs3["edgefleet"].cpuSec - procs2["edgefleet"].cpuSec
	res.changeAPICPU = procs3["kube-apiserver"].cpuSec - procs2["kube-apiserver"].cpuSec
	res.changeBDUpdates = bd3["update"] - bd1["update"]

	logObjectSizes(ctx, t, c)
	if n := strings.Count(m.Output(), "Reconciler error"); n > 0 {
		i := strings.Index(m.Output(), "Reconciler error")
		t.Logf("manager logged %d reconcile errors so far; first: %.600s", n, m.Output()[i:])
	}

	// Idle: everything deployed, agents connected and quiet.
	time.Sleep(idleWindow)
	procs4 := sampleProcs(m.DataDir)
	res.idleRSS, res.idleAPIRSS = procs4["edgefleet"].rssKiB, procs4["kube-apiserver"].rssKiB
	res.idleManagerCPUPerMinute = (procs4["edgefleet"].cpuSec - procs3["edgefleet"].cpuSec) / idleWindow.Minutes()
	return res
}

// startObserver watches Clusters, Bundles and BundleDeployments in every
// namespace so the clocks are read from memory instead of by polling lists;
// it costs the apiserver three watches. Its lists never deep-copy (they are
// only read), so polling does not steal the 2 cores from what is measured.
func startObserver(ctx context.Context, t *testing.T, cfg *rest.Config) cache.Cache {
	t.Helper()
	ca, err := cache.New(cfg, cache.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&fleetv1.Cluster{}, &fleetv1.Bundle{}, &fleetv1.BundleDeployment{}} {
		if _, err := ca.GetInformer(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		t.Fatal("observer cache did not sync")
	}
	return ca
}

// benchManifest is bundle i's content: a ConfigMap and a Deployment, unique
// per bundle so each has its own content ID.
func benchManifest(i int) *content.Manifest {
	return &content.Manifest{Resources: []fleetv1.BundleResource{
		{Name: "settings.yaml", Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  bundle: \"%d\"\n", i)},
		{Name: "deployment.yaml", Content: `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`},
	}}
}

// parallel runs f for 0..n-1 on writeWorkers goroutines and fails on the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(writeWorkers, n) {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = fmt.Errorf("item %d: %w", i, err) })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// logObjectSizes logs how large one of each fleet object is as stored,
// managedFields included: the apiserver's cost per write grows with it.
func logObjectSizes(ctx context.Context, t *testing.T, c client.Client) {
	var bds fleetv1.BundleDeploymentList
	var bundles fleetv1.BundleList
	var clusters fleetv1.ClusterList
	var sizes []string
	for _, l := range []client.ObjectList{&bds, &bundles, &clusters} {
		if err := c.List(ctx, l, client.Limit(1)); err != nil {
			continue
		}
		items, _ := meta.ExtractList(l)
		if len(items) == 0 {
			continue
		}
		data, _ := json.Marshal(items[0])
		o := items[0].(client.Object)
		mf, _ := json.Marshal(o.GetManagedFields())
		sizes = append(sizes, fmt.Sprintf("%T %d bytes (managedFields %d)", items[0], len(data), len(mf)))
	}
	t.Logf("object sizes: %s", strings.Join(sizes, "; "))
}

// readyDeployments counts BundleDeployments whose agent applied the current
// deployment ID and reports ready; with contentIDs, only those deploying one
// of them.
func readyDeployments(ctx context.Context, c client.Reader, contentIDs map[string]bool) int {
	var list fleetv1.BundleDeploymentList
	if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return 0
	}
	n := 0
	for _, bd := range list.Items {
		id, _, _ := strings.Cut(bd.Spec.DeploymentID, ":")
		if (contentIDs == nil || contentIDs[id]) && bd.Status.AppliedDeploymentID == bd.Spec.DeploymentID && bd.Status.Ready {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitProgress(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// waitProgress polls cond until it reports done; its progress string is
// logged every 5 s, so a long phase shows its pace.
func waitProgress(t *testing.T, timeout time.Duration, what string, cond func() (done bool, progress string)) {
	t.Helper()
	start := time.Now()
	deadline, nextLog := start.Add(timeout), start.Add(5*time.Second)
	for {
		done, progress := cond()
		if done {
			return
		}
		if now := time.Now(); now.After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (%s)", timeout, what, progress)
		} else if now.After(nextLog) {
			t.Logf("%5.1fs waiting for %s: %s", now.Sub(start).Seconds(), what, progress)
			nextLog = now.Add(5 * time.Second)
		}
		time.Sleep(pollEvery)
	}
}

// pollEvery is how often the clocks' conditions are checked. Each check
// walks every BundleDeployment in the observer's cache, so at tens of
// thousands it is set coarser (setPollInterval) to keep the benchmark from
// taking CPU from what it measures; the clocks' resolution is this interval.
var pollEvery = 50 * time.Millisecond

func setPollInterval(deployments int) {
	pollEvery = min(time.Second, 50*time.Millisecond*time.Duration(max(1, deployments/2500)))
}
