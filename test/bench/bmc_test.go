package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/redfishemu"
)

// orderBMC places the BMC section after the others in BENCHMARKS.md.
const orderBMC = 75

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// TestBMCPolling: the manager polls EDGEFLEET_BENCH_BMCS (1,000) emulated
// BMCs (in-process redfishemu instances over HTTPS, simulated machines, no
// VMs) and EDGEFLEET_BENCH_BMC_DEAD (100) BMCs whose address does not
// answer, with --bmc-poll-interval EDGEFLEET_BENCH_BMC_POLL seconds (60):
// time until all answering BMCs are Ready, then over a window of
// EDGEFLEET_BENCH_BMC_WINDOW seconds (180) the Redfish requests per minute
// they receive, the polls the manager counts by result (dead BMCs back
// off: 10 s doubling to 10 min) and the manager's CPU.
func TestBMCPolling(t *testing.T) {
	requireBench(t)
	n, dead := envInt("EDGEFLEET_BENCH_BMCS", 1000), envInt("EDGEFLEET_BENCH_BMC_DEAD", 100)
	poll := time.Duration(envInt("EDGEFLEET_BENCH_BMC_POLL", 60)) * time.Second
	window := time.Duration(envInt("EDGEFLEET_BENCH_BMC_WINDOW", 180)) * time.Second
	m := startQuietManager(t, "--bmc-poll-interval", poll.String())
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// Creating a thousand BMCs is the user's bulk apply: no client-side limit.
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: m.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := "bmcs"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, StringData: map[string]string{"username": "admin", "password": "bench"}}); err != nil {
		t.Fatal(err)
	}
	ca, err := redfishemu.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	emus := make([]*redfishemu.BMC, n)
	for i := range emus {
		e, err := redfishemu.Start(redfishemu.Options{Username: "admin", Password: "bench", CA: ca, SerialNumber: fmt.Sprintf("SN%05d", i), UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)})
		if err != nil {
			t.Fatal(err)
		}
		emus[i] = e
		t.Cleanup(e.Close)
	}
	var deadAddrs []string
	for range dead {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		deadAddrs = append(deadAddrs, "https://"+ln.Addr().String())
		ln.Close()
	}
	requests := func() int64 {
		var s int64
		for _, e := range emus {
			s += e.Requests()
		}
		return s
	}
	start := time.Now()
	var wg sync.WaitGroup
	var createErr atomic.Value
	sem := make(chan struct{}, 16)
	create := func(name, addr string) {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		b := &machinesv1.BMC{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: machinesv1.BMCSpec{
			Address: addr, CredentialsSecretRef: machinesv1.ObjectReference{Name: "creds"}, CABundle: string(ca.CertPEM)}}
		if err := c.Create(ctx, b); err != nil {
			createErr.Store(err)
		}
	}
	for i, e := range emus {
		wg.Add(1)
		go create(fmt.Sprintf("bmc-%05d", i), e.URL)
	}
	for i, a := range deadAddrs {
		wg.Add(1)
		go create(fmt.Sprintf("dead-%05d", i), a)
	}
	wg.Wait()
	if err, _ := createErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)
	var ready, unreachable int
	deadline := time.Now().Add(15 * time.Minute)
	for {
		var list machinesv1.BMCList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		ready, unreachable = 0, 0
		for _, b := range list.Items {
			c := meta.FindStatusCondition(b.Status.Conditions, "Ready")
			if c != nil && c.Status == metav1.ConditionTrue {
				ready++
			} else if c != nil && c.Status == metav1.ConditionFalse {
				// Unreachable, or BadCertificate when another process on
				// the machine took the closed port meanwhile.
				unreachable++
			}
		}
		if ready == n && unreachable == dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d of %d BMCs Ready, %d of %d unreachable", time.Since(start), ready, n, unreachable, dead)
		}
		time.Sleep(time.Second)
	}
	allReady := time.Since(start)
	t.Logf("%d BMCs created in %s, all Ready (and %d dead ones Unreachable) after %s", n, created.Round(time.Millisecond), dead, allReady.Round(time.Millisecond))

	pollsBefore := managerPolls(t, m)
	reqBefore, cpuBefore := requests(), sampleProcs(m.DataDir)
	time.Sleep(window)
	pollsAfter := managerPolls(t, m)
	reqAfter, cpuAfter := requests(), sampleProcs(m.DataDir)
	mins := window.Minutes()
	perMin := float64(reqAfter-reqBefore) / mins
	okPerMin := (pollsAfter["ok"] - pollsBefore["ok"]) / mins
	failedPolls := 0.0
	for result, v := range pollsAfter {
		if result != "ok" {
			failedPolls += v - pollsBefore[result]
		}
	}
	deadPerMin := failedPolls / mins
	cpu := func(comm string) float64 { return cpuAfter[comm].cpuSec - cpuBefore[comm].cpuSec }
	mgrCPU := cpu("edgefleet")
	t.Logf("over %s: %.0f Redfish requests/min to %d answering BMCs (ideal %.0f), manager polls/min ok %.0f, failed %.1f (%d dead BMCs); manager CPU %.1f s (%.1f%% of a core), kube-apiserver %.1f s, etcd %.1f s; manager RSS %s",
		window, perMin, n, float64(n)*time.Minute.Seconds()/poll.Seconds(), okPerMin, deadPerMin, dead, mgrCPU, 100*mgrCPU/window.Seconds(), cpu("kube-apiserver"), cpu("etcd"), mib(cpuAfter["edgefleet"].rssKiB))
	var md strings.Builder
	fmt.Fprintf(&md, "## BMC polling (issue #16)\n\n")
	fmt.Fprintf(&md, "`TestBMCPolling`: %d emulated Redfish BMCs (test/redfishemu over HTTPS, in the test process, simulated machines) and %d BMCs whose address does not answer, `--bmc-poll-interval %s`, 16 workers. %s.\n\n", n, dead, poll, machine())
	fmt.Fprintf(&md, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&md, "| BMCs created (16 clients) | %s |\n", secs(created))
	fmt.Fprintf(&md, "| all answering BMCs Ready, dead ones Unreachable | %s after the first create |\n", secs(allReady))
	fmt.Fprintf(&md, "| Redfish requests/min to the answering BMCs | %.0f (one GET of the system per poll on a reused session: ideal %.0f) |\n", perMin, float64(n)*time.Minute.Seconds()/poll.Seconds())
	fmt.Fprintf(&md, "| polls/min of dead BMCs (backoff 10 s → 10 min) | %.1f for %d BMCs |\n", deadPerMin, dead)
	fmt.Fprintf(&md, "| manager CPU over %s | %.1f s (%.1f%% of a core) |\n", window, mgrCPU, 100*mgrCPU/window.Seconds())
	fmt.Fprintf(&md, "| kube-apiserver / etcd CPU | %.1f s / %.1f s |\n", cpu("kube-apiserver"), cpu("etcd"))
	fmt.Fprintf(&md, "| manager RSS | %s |\n", mib(cpuAfter["edgefleet"].rssKiB))
	addSection(orderBMC, md.String())
}

// managerPolls is edgefleet_bmc_requests_total by result.
func managerPolls(t *testing.T, m *harness.Manager) map[string]float64 {
	t.Helper()
	resp, err := m.AdminHTTP.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return promSum(string(text), "edgefleet_bmc_requests_total", "result")
}
