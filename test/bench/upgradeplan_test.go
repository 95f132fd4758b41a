package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/upgradeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

const (
	orderUpgradePlan   = orderSeedImage + 7
	upgradePlanNodes   = 200
	upgradePlanConcurr = 20
)

// TestUpgradePlanOnFakeNodes times a cluster upgrade Plan delivered in a
// bundle by the real manager to a real edgefleet-agent binary, run on a dev
// cluster of kwok nodes (their Jobs' pods complete at once), and reports the
// agent's CPU and memory. EDGEFLEET_BENCH_PLAN_NODES overrides the node
// count.
func TestUpgradePlanOnFakeNodes(t *testing.T) {
	requireBench(t)
	nodes := upgradePlanNodes
	if v, err := strconv.Atoi(os.Getenv("EDGEFLEET_BENCH_PLAN_NODES")); err == nil && v > 0 {
		nodes = v
	}
	ctx := context.Background()
	m := startQuietManager(t)
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{Nodes: nodes})[0]
	a := joinAgent(t, m, cl)
	down, err := client.New(cl.RESTConfig(), client.Options{Scheme: upgradeplan.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "upgrade")
	files := map[string]string{
		"fleet.yaml":     "defaultNamespace: system-upgrade\n",
		"namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: system-upgrade\n",
		"plan.yaml": fmt.Sprintf(`apiVersion: upgrade.edgefleet.io/v1alpha1
kind: Plan
metadata:
  name: k3s-agent
  namespace: system-upgrade
spec:
  concurrency: %d
  cordon: true
  upgrade:
    image: rancher/k3s-upgrade
  version: v1.30.2+k3s1
`, upgradePlanConcurr),
	}
	for name, data := range files {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p0, err := readProc(a.Pid())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if out, err := exec.Command(harness.EdgefleetBinary(t), "apply", "-n", agentNS, "--kubeconfig", m.Kubeconfig, "upgrade", dir).CombinedOutput(); err != nil {
		t.Fatalf("edgefleet apply: %v\n%s", err, out)
	}
	var first time.Duration
	waitProgress(t, 20*time.Minute, "every node upgraded", func() (bool, string) {
		p := &upgradev1.Plan{}
		if err := down.Get(ctx, client.ObjectKey{Namespace: "system-upgrade", Name: "k3s-agent"}, p); err != nil {
			return false, err.Error()
		}
		if first == 0 && p.Status.Upgraded > 0 {
			first = time.Since(t0)
		}
		if meta.IsStatusConditionTrue(p.Status.Conditions, "Stalled") {
			t.Fatalf("plan stalled: %+v", p.Status.Conditions)
		}
		return p.Status.Total == int32(nodes) && p.Status.Upgraded == int32(nodes) && meta.IsStatusConditionTrue(p.Status.Conditions, "Ready"),
			fmt.Sprintf("%d/%d upgraded", p.Status.Upgraded, p.Status.Total)
	})
	total := time.Since(t0)
	p1, err := readProc(a.Pid())
	if err != nil {
		t.Fatal(err)
	}
	cpu := p1.cpuSec - p0.cpuSec
	waves := (nodes + upgradePlanConcurr - 1) / upgradePlanConcurr
	t.Logf("plan over %d kwok nodes at concurrency %d: first node done %s, all %s (%.2f s per wave of %d); agent CPU %.1f s, RSS %s, peak %s",
		nodes, upgradePlanConcurr, secs(first), secs(total), total.Seconds()/float64(waves), waves, cpu, mib(p1.rssKiB), mib(p1.hwmKiB))

	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f("## Cluster upgrade Plan\n\n")
	f("One Plan (cordon, concurrency %d) in a bundle applied with `edgefleet apply` to the real manager, run by the `edgefleet-agent` binary on a dev cluster of %d kwok nodes ", upgradePlanConcurr, nodes)
	f("(kube-controller-manager's Job controller, the scheduler, kwok completing each Job's pod at once): the time is the controller's and the cluster's, not an upgrade's. ")
	f("The clock runs from `edgefleet apply` to the Plan's `Ready` with every node labelled.\n\n")
	f("| nodes | concurrency | first node | all nodes | per wave | agent CPU | agent RSS after | agent peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	f("| %d | %d | %s | %s | %.2f s | %.1f s | %s | %s |\n", nodes, upgradePlanConcurr, secs(first), secs(total), total.Seconds()/float64(waves), cpu, mib(p1.rssKiB), mib(p1.hwmKiB))
	addSection(orderUpgradePlan, b.String())
}
