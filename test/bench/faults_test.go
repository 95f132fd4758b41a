package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Issue #20 scenario 1: the manager restarts with many agents connected.

const (
	restartBundles = 2
	restartNS      = "fleet-default"
	// restartReconnectTarget is the bound on reconnecting.
	restartReconnectTarget = 60 * time.Second
)

// restartAgents is the fleet size: EDGEFLEET_BENCH_RESTART_AGENTS, 1,000
// by default.
func restartAgents(t *testing.T) int {
	if v := os.Getenv("EDGEFLEET_BENCH_RESTART_AGENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EDGEFLEET_BENCH_RESTART_AGENTS=%q is not a positive number", v)
		}
		return n
	}
	return 1000
}

// simJoinedAgent is one cluster's agent in this process: the real join
// (CA pinning, registration, credential storage and renewal) and the real
// tunnel client (internal/agent/join, internal/tunnel), and a
// BundleDeployment watch through the manager's endpoint with the cluster's
// own credential, as internal/agent opens it. What it deploys is counted,
// not applied: see simFleet.
type simJoinedAgent struct {
	i         int
	joined    *join.Joined
	client    client.WithWatch
	informer  toolscache.SharedIndexInformer
	watchedAt atomic.Int64 // unix nanos of the last watch the manager accepted
}

// simFleet runs many simulated agents and counts their deploys with
// internal/agent's rule: deploy when spec.deploymentID differs from
// status.appliedDeploymentID or from the agent's own inventory.
type simFleet struct {
	agents []*simJoinedAgent
	queue  workqueue.TypedRateLimitingInterface[simKey]

	mu        sync.Mutex
	inventory map[simKey]string
	applies   int
}

type simKey struct {
	agent     int
	name      string
	namespace string
}

// credentialRenamer gives each simulated agent its own credential Secret on
// the one real downstream cluster they share: join stores the credential
// in edgefleet-system/edgefleet-agent, which would otherwise be the same
// object for all of them. Everything else the agents write downstream (the
// impersonator account and its RBAC) is identical for all and idempotent.
type credentialRenamer struct {
	name string
	next http.RoundTripper
}

func (c *credentialRenamer) RoundTrip(r *http.Request) (*http.Response, error) {
	const coll = "/api/v1/namespaces/" + clusterjoin.SystemNamespace + "/secrets"
	p := r.URL.Path
	switch {
	case p == coll+"/"+clusterjoin.CredentialSecret:
		r = r.Clone(r.Context())
		r.URL.Path = coll + "/" + c.name
		if r.Body != nil && r.Method == http.MethodPut {
			if err := c.renameBody(r); err != nil {
				return nil, err
			}
		}
	case p == coll && r.Method == http.MethodPost:
		r = r.Clone(r.Context())
		if err := c.renameBody(r); err != nil {
			return nil, err
		}
	}
	return c.next.RoundTrip(r)
}

func (c *credentialRenamer) renameBody(r *http.Request) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("credentialRenamer: body is not JSON: %w", err)
	}
	if md, ok := obj["metadata"].(map[string]any); ok && md["name"] == clusterjoin.CredentialSecret {
		md["name"] = c.name
	}
	if data, err = json.Marshal(obj); err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return nil
}

// startSimAgent joins agent i and starts its tunnel, credential renewal and
// BundleDeployment watch.
func (f *simFleet) startSimAgent(ctx context.Context, i int, m *harness.Manager, token string, downstream *rest.Config) (*simJoinedAgent, error) {
	ds := rest.CopyConfig(downstream)
	ds.QPS, ds.Burst = -1, 0
	// JSON, not protobuf, so the renamer can read what it renames.
	ds.ContentType, ds.AcceptContentTypes = "application/json", "application/json"
	name := fmt.Sprintf("%s-sim-%05d", clusterjoin.CredentialSecret, i)
	ds.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &credentialRenamer{name: name, next: rt} })
	jo := join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum, ClientID: fmt.Sprintf("sim-%05d", i)}
	if os.Getenv("EDGEFLEET_BENCH_DEBUG") != "" {
		jo.Log = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	}
	j, err := join.Join(ctx, jo, ds, agent.Scheme())
	if err != nil {
		return nil, fmt.Errorf("agent %d: joining: %w", i, err)
	}
	go func() { _ = j.Run(ctx) }()
	wc, err := client.NewWithWatch(j.ManagerConfig, client.Options{Scheme: agent.Scheme()})
	if err != nil {
		return nil, err
	}
	a := &simJoinedAgent{i: i, joined: j, client: wc}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (apiruntime.Object, error) {
			l := &fleetv1.BundleDeploymentList{}
			return l, wc.List(ctx, l, client.InNamespace(j.Namespace), &client.ListOptions{Raw: &o})
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := wc.Watch(ctx, &fleetv1.BundleDeploymentList{}, client.InNamespace(j.Namespace), &client.ListOptions{Raw: &o})
			if err == nil {
				a.watchedAt.Store(time.Now().UnixNano())
			}
			return w, err
		},
	}
	a.informer = toolscache.NewSharedIndexInformer(lw, &fleetv1.BundleDeployment{}, 0, toolscache.Indexers{})
	enqueue := func(obj any) {
		if bd, ok := obj.(*fleetv1.BundleDeployment); ok {
			f.queue.Add(simKey{agent: i, namespace: bd.Namespace, name: bd.Name})
		}
	}
	// As internal/agent's predicates: new objects and spec (generation)
	// changes; a re-list after a reconnect is neither.
	_, err = a.informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { enqueue(obj) },
		UpdateFunc: func(o, n any) {
			if o.(*fleetv1.BundleDeployment).Generation != n.(*fleetv1.BundleDeployment).Generation {
				enqueue(n)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	go a.informer.RunWithContext(ctx)
	return a, nil
}

func (f *simFleet) work(ctx context.Context) {
	for {
		k, shutdown := f.queue.Get()
		if shutdown {
			return
		}
		if err := f.reconcile(ctx, k); err != nil {
			f.queue.AddRateLimited(k)
		} else {
			f.queue.Forget(k)
		}
		f.queue.Done(k)
	}
}

func (f *simFleet) reconcile(ctx context.Context, k simKey) error {
	a := f.agents[k.agent]
	bd := &fleetv1.BundleDeployment{}
	if err := a.client.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, bd); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !bd.DeletionTimestamp.IsZero() || bd.Spec.Paused || bd.Spec.DeploymentID == "" {
		return nil
	}
	f.mu.Lock()
	need := bd.Spec.DeploymentID != bd.Status.AppliedDeploymentID || f.inventory[k] != bd.Spec.DeploymentID
	if need {
		f.inventory[k] = bd.Spec.DeploymentID
		f.applies++
	}
	f.mu.Unlock()
	if !need && bd.Status.ObservedGeneration == bd.Generation {
		return nil
	}
	before := bd.DeepCopy()
	reportApplied(bd)
	if err := a.client.Status().Patch(ctx, bd, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func (f *simFleet) appliesSoFar() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// managerSample reads the figures of the manager's own /metrics.
func managerSample(m *harness.Manager) (sessions, goroutines float64, bdWrites map[string]float64, err error) {
	resp, err := m.AdminHTTP.Get(m.URL + "/metrics")
	if err != nil {
		return 0, 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, nil, err
	}
	text := string(body)
	return total(promSum(text, "edgefleet_tunnel_sessions", "")), total(promSum(text, "go_goroutines", "")),
		promSum(text, "edgefleet_bundledeployment_writes_total", "op"), nil
}

// TestManagerRestartWithConnectedAgents: a manager with N connected agents
// (default 1,000) restarts. Every agent must reconnect its tunnel and its
// watch within 60 s, no unchanged BundleDeployment may be deployed again,
// the tunnel sessions and goroutines must return to their level before,
// and the agents must still receive a change afterwards.
func TestManagerRestartWithConnectedAgents(t *testing.T) {
	requireBench(t)
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard()) // a thousand reflectors report the restart
	n := restartAgents(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	downstream := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	port := freeLocalPort(t)
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--join-rate-limit", "-1"}
	m := startQuietManager(t, args...)
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restartNS}}); err != nil {
		t.Fatal(err)
	}
	token := createSimToken(t, m, restartNS, 2*time.Hour, n)
	ids := make([]string, restartBundles+1)
	for b := range ids {
		if ids[b], err = content.Store(ctx, m.Client, benchManifest(b)); err != nil {
			t.Fatal(err)
		}
	}
	for b := range restartBundles {
		if err := m.Client.Create(ctx, &fleetv1.Bundle{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", b), Namespace: restartNS},
			Spec: fleetv1.BundleSpec{
				BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: fmt.Sprintf("app-%d", b)},
				ContentsID:              ids[b],
				Targets:                 []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
			},
		}); err != nil {
			t.Fatal(err)
		}
	}

	tJoin := time.Now()
	f := joinSimFleet(ctx, t, m, token, downstream.RESTConfig(), n)
	t.Logf("%d agents joined in %s", n, secs(time.Since(tJoin)))
	waitProgress(t, 20*time.Minute, "every tunnel and every deployment", func() (bool, string) {
		sessions, _, _, err := managerSample(m)
		if err != nil {
			return false, err.Error()
		}
		var list fleetv1.BundleList
		if err := m.Client.List(ctx, &list, client.InNamespace(restartNS)); err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, b := range list.Items {
			if b.Status.ReadyClusters == int32(n) {
				ready++
			}
		}
		return int(sessions) == n && ready == restartBundles, fmt.Sprintf("%.0f/%d tunnels, %d/%d bundles ready on all clusters, %d applies", sessions, n, ready, restartBundles, f.appliesSoFar())
	})
	t.Logf("fleet of %d connected and deployed %s after the first join", n, secs(time.Since(tJoin)))

	// Baseline, after a quiet moment.
	time.Sleep(15 * time.Second)
	sessions0, gor0, _, err := managerSample(m)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	self0 := runtime.NumGoroutine()
	applies0 := f.appliesSoFar()
	rss0 := sampleProcs(m.DataDir)["edgefleet"].rssKiB
	t.Logf("before: %.0f tunnel sessions, manager %.0f goroutines %s RSS, bench process %d goroutines, %d applies", sessions0, gor0, mib(rss0), self0, applies0)

	// The restart, watched once a second: kube-apiserver's request rate
	// (its counters restart with it) and the manager's tunnel count.
	type sample struct {
		at       time.Time
		requests float64
		sessions float64
	}
	var current atomic.Pointer[harness.Manager]
	current.Store(m)
	stopSampling := sampleEvery(ctx, time.Second, func(ctx context.Context) (sample, bool) {
		s := sample{at: time.Now(), requests: -1, sessions: -1}
		c, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		if api, err := scrapeAPIServer(c, cfg); err == nil {
			s.requests = api.requests
		}
		cancel()
		if sess, _, _, err := managerSample(current.Load()); err == nil {
			s.sessions = sess
		}
		return s, true
	})

	tStop := time.Now()
	m.Stop()
	down := time.Since(tStop)
	m = harness.StartManager(t, harness.ManagerOptions{DataDir: m.DataDir, Args: append([]string{"--log-level", "info"}, args...)})
	current.Store(m)
	ready := time.Now()
	t.Logf("manager stopped in %s, started again in %s", secs(down), secs(ready.Sub(tStop)-down))

	// Reconnected: every tunnel session back and every agent's watch
	// accepted by the new manager.
	var tunnelsBack, watchesBack time.Duration
	watchesDone := false
	waitProgress(t, 5*time.Minute, "every agent reconnected", func() (bool, string) {
		sessions, _, _, err := managerSample(m)
		if err != nil {
			return false, err.Error()
		}
		if int(sessions) == n && tunnelsBack == 0 {
			tunnelsBack = time.Since(ready)
		}
		watching := 0
		var last int64
		for _, a := range f.agents {
			// A watch can come back before the harness sees /readyz.
			if at := a.watchedAt.Load(); at > tStop.UnixNano() {
				watching++
				last = max(last, at)
			}
		}
		if watching == n && !watchesDone {
			watchesBack, watchesDone = time.Unix(0, last).Sub(ready), true
		}
		return tunnelsBack > 0 && watchesDone, fmt.Sprintf("%.0f/%d tunnels, %d/%d watches", sessions, n, watching, n)
	})
	t.Logf("after the restart: tunnels back %s, watches back %s after the new manager was ready", secs(tunnelsBack), secs(watchesBack))

	// Settle, then compare with before.
	time.Sleep(20 * time.Second)
	samples := stopSampling()
	sessions1, gor1, bdWrites1, err := managerSample(m)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	time.Sleep(time.Second)
	self1 := runtime.NumGoroutine()
	reapplies := f.appliesSoFar() - applies0
	rss1 := sampleProcs(m.DataDir)["edgefleet"].rssKiB
	var peak float64
	var peakAt time.Duration
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if a.requests < 0 || b.requests < 0 {
			continue
		}
		d := b.requests - a.requests
		if d < 0 {
			d = b.requests // the apiserver restarted: its counter too
		}
		if rate := d / b.at.Sub(a.at).Seconds(); rate > peak {
			peak, peakAt = rate, b.at.Sub(tStop)
		}
	}
	t.Logf("after: %.0f tunnel sessions, manager %.0f goroutines %s RSS, bench process %d goroutines; %d re-applies; manager BD writes since its start %v; peak kube-apiserver rate %.0f req/s at %s after the stop",
		sessions1, gor1, mib(rss1), self1, reapplies, bdWrites1, peak, secs(peakAt))

	if tunnelsBack > restartReconnectTarget || watchesBack > restartReconnectTarget {
		t.Errorf("reconnect took tunnels %s, watches %s: want ≤ %s", secs(tunnelsBack), secs(watchesBack), restartReconnectTarget)
	}
	if reapplies != 0 {
		t.Errorf("%d BundleDeployments deployed again after the restart although unchanged", reapplies)
	}
	if u := bdWrites1["update"] + bdWrites1["create"] + bdWrites1["delete"]; u != 0 {
		t.Errorf("the restarted manager wrote %v BundleDeployments with nothing changed", bdWrites1)
	}
	if int(sessions1) != n {
		t.Errorf("%.0f tunnel sessions after the restart, want %d", sessions1, n)
	}
	// A leak is per agent or per reconnect; noise is tens.
	if float64(self1) > float64(self0)*1.05+50 {
		t.Errorf("bench process (the agents) has %d goroutines after the restart, %d before: a leak", self1, self0)
	}
	if gor1 > gor0*1.05+50 {
		t.Errorf("the restarted manager has %.0f goroutines, %.0f before: a leak", gor1, gor0)
	}

	// The watches are live: a change reaches every agent, once.
	var b0 fleetv1.Bundle
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: restartNS, Name: "app-0"}, &b0); err != nil {
		t.Fatal(err)
	}
	b0.Spec.ContentsID = ids[restartBundles]
	if err := m.Client.Update(ctx, &b0); err != nil {
		t.Fatal(err)
	}
	tChange := time.Now()
	applies1 := f.appliesSoFar()
	waitProgress(t, 5*time.Minute, "the change on every cluster", func() (bool, string) {
		var b fleetv1.Bundle
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: restartNS, Name: "app-0"}, &b); err != nil {
			return false, err.Error()
		}
		return b.Status.ObservedGeneration == b.Generation && b.Status.ReadyClusters == int32(n) && f.appliesSoFar()-applies1 >= n,
			fmt.Sprintf("%d/%d applied", f.appliesSoFar()-applies1, n)
	})
	changed := time.Since(tChange)
	time.Sleep(3 * time.Second)
	if got := f.appliesSoFar() - applies1; got != n {
		t.Errorf("the change was deployed %d times on %d clusters", got, n)
	}
	t.Logf("a change after the restart reached all %d clusters in %s", n, secs(changed))

	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	w("## Faults\n\n")
	w("Issue #20. Scenarios 2 and 4 are tests in `make test` (test/e2e/faults*_test.go); their figures are from the runs noted in docs/operations.md (\"Restarts and outages\").\n\n")
	w("### Manager restart with %d connected agents (scenario 1)\n\n", n)
	w("A real manager (`edgefleet server`, embedded control plane, `--unsafe-no-fsync`, no join rate limit) and %d simulated agents in the benchmark process, ", n)
	w("each with the real join code (`internal/agent/join`: CA pinning, `/v1/register`, credential stored in a Secret on one shared real downstream cluster, ")
	w("renewal), the real tunnel client (`internal/tunnel`, websocket + yamux, jittered reconnect backoff 0.5 s doubling to 30 s) and a BundleDeployment ")
	w("watch through the manager's `/k8s/manager` proxy with the cluster's own credential. They deploy nothing: a deploy is counted when the agent's rule ")
	w("(`internal/agent` needsDeploy: new deploymentID, or not in its inventory) says so, and the status a real agent writes is written. %d Bundles target every cluster. ", restartBundles)
	w("The manager gets SIGTERM and is started again on the same data dir and port (its etcd and kube-apiserver restart with it).\n\n")
	w("| figure | value | target |\n|---|---|---|\n")
	w("| agents (tunnels + watches) | %d | 1,000 |\n", n)
	w("| manager stop (SIGTERM → exit) | %s | — |\n", secs(down))
	w("| manager start → ready | %s | — |\n", secs(ready.Sub(tStop)-down))
	w("| all tunnels back, after ready | %s | ≤ 60 s |\n", secs(tunnelsBack))
	w("| all BundleDeployment watches back, after ready (negative: before the harness saw /readyz) | %s | ≤ 60 s |\n", secs(watchesBack))
	w("| peak kube-apiserver request rate (1 s samples, stop → settled) | %.0f req/s at %s after the stop | recorded |\n", peak, secs(peakAt))
	w("| unchanged BundleDeployments deployed again | %d | 0 |\n", reapplies)
	w("| BundleDeployment writes by the restarted manager | %.0f | 0 |\n", bdWrites1["update"]+bdWrites1["create"]+bdWrites1["delete"])
	w("| tunnel sessions before / after | %.0f / %.0f | equal |\n", sessions0, sessions1)
	w("| manager goroutines before / after | %.0f / %.0f | no leak (≤ +5%% + 50) |\n", gor0, gor1)
	w("| agents' (bench process) goroutines before / after | %d / %d | no leak (≤ +5%% + 50) |\n", self0, self1)
	w("| manager RSS before / after | %s / %s | — |\n", mib(rss0), mib(rss1))
	w("| a change after the restart on every cluster | %s, %d deploys | once per cluster |\n\n", secs(changed), n)
	w("Run alone with `EDGEFLEET_BENCH=1 go test -run TestManagerRestartWithConnectedAgents ./test/bench/` (set `EDGEFLEET_BENCH_RESTART_AGENTS` for another fleet size).\n")
	addSection(orderFaults, sb.String())
}

// createSimToken creates a registration token for n clusters in ns, valid
// for ttl, with the edgefleet CLI, and returns it.
func createSimToken(t *testing.T, m *harness.Manager, ns string, ttl time.Duration, n int) string {
	t.Helper()
	out, err := exec.Command(harness.EdgefleetBinary(t), "token", "create", "--kubeconfig", m.Kubeconfig, "-n", ns,
		"--ttl", ttl.String(), "--max-clusters", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet token create: %v\n%s", err, out)
	}
	g := tokenLine.FindStringSubmatch(string(out))
	if g == nil {
		t.Fatalf("no token in:\n%s", out)
	}
	return g[3]
}

// joinSimFleet joins n simulated agents with token, 32 at a time (a fleet
// comes up over time, not in one instant; the join path's own storm is
// TestRegistrationStorm's), with 32 workers running their deployments until
// the test ends.
func joinSimFleet(ctx context.Context, t *testing.T, m *harness.Manager, token string, downstream *rest.Config, n int) *simFleet {
	t.Helper()
	f := &simFleet{agents: make([]*simJoinedAgent, n), inventory: map[simKey]string{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[simKey]())}
	t.Cleanup(f.queue.ShutDown)
	for range 32 {
		go f.work(ctx)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	joinErrs := make([]error, n)
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f.agents[i], joinErrs[i] = f.startSimAgent(ctx, i, m, token, downstream)
			}
		})
	}
	wg.Wait()
	for _, err := range joinErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// sampleEvery takes a sample now and then every interval in the
// background (take drops one by returning false); stop ends the sampling
// and returns the samples in order.
func sampleEvery[T any](ctx context.Context, every time.Duration, take func(ctx context.Context) (T, bool)) (stop func() []T) {
	ctx, cancel := context.WithCancel(ctx)
	var samples []T
	var done sync.WaitGroup
	done.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if s, ok := take(ctx); ok {
				samples = append(samples, s)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() []T {
		cancel()
		done.Wait()
		return samples
	}
}

// freeLocalPort is a port free on 127.0.0.1 now, for a manager that must
// come back on the same address.
func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
