package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Issue #20 scenario 2: the control plane fails under a rollout.

const (
	rolloutNS       = "faults"
	rolloutClusters = 40
	rolloutBundles  = 2
)

// rollout is a fleet of simulated clusters with bundles rolled out in
// partitions of 25%, a quarter of the clusters unavailable at most.
type rollout struct {
	c      client.Client
	agents *simAgents
	ids    map[int]string // version → content ID
}

func startRollout(ctx context.Context, t *testing.T, c client.Client, agentCfg *rest.Config) *rollout {
	t.Helper()
	r := &rollout{c: c, agents: newSimAgents(150 * time.Millisecond), ids: map[int]string{}}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rolloutNS}}); err != nil {
		t.Fatal(err)
	}
	for i := range rolloutClusters {
		if err := c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("site-%02d", i), Namespace: rolloutNS}}); err != nil {
			t.Fatal(err)
		}
	}
	for v := 1; v <= 2; v++ {
		id, err := content.Store(ctx, c, &content.Manifest{Resources: []fleetv1.BundleResource{{Name: "settings.yaml",
			Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: \"%d\"\n", v)}}})
		if err != nil {
			t.Fatal(err)
		}
		r.ids[v] = id
	}
	if err := r.agents.start(ctx, agentCfg, 2); err != nil {
		t.Fatal(err)
	}
	quarter := intstr.FromString("25%")
	zero := int32(0)
	for b := range rolloutBundles {
		if err := c.Create(ctx, &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", b), Namespace: rolloutNS},
			Spec: fleetv1.BundleSpec{
				BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: "app"},
				ContentsID:              r.ids[1],
				RolloutStrategy:         &fleetv1.RolloutStrategy{MaxUnavailable: &quarter, AutoPartitionSize: &quarter, AutoPartitionThreshold: &zero},
				Targets:                 []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
			}}); err != nil {
			t.Fatal(err)
		}
	}
	r.waitVersion(ctx, t, 1, 3*time.Minute)
	return r
}

// upgrade moves every bundle to version v.
func (r *rollout) upgrade(ctx context.Context, t *testing.T, v int) {
	t.Helper()
	for b := range rolloutBundles {
		var bundle fleetv1.Bundle
		if err := r.c.Get(ctx, client.ObjectKey{Namespace: rolloutNS, Name: fmt.Sprintf("app-%d", b)}, &bundle); err != nil {
			t.Fatal(err)
		}
		bundle.Spec.ContentsID = r.ids[v]
		if err := r.c.Update(ctx, &bundle); err != nil {
			t.Fatal(err)
		}
	}
}

// progress is how many deployments the agents run at version v.
func (r *rollout) progress(v int) int {
	n := 0
	for _, id := range r.deploymentIDs(v) {
		n += r.agents.deployed(id)
	}
	return n
}

// deploymentIDs are the deployment IDs of version v seen in any deploy.
func (r *rollout) deploymentIDs(v int) []string {
	r.agents.mu.Lock()
	defer r.agents.mu.Unlock()
	var ids []string
	for id := range r.agents.firstSeen {
		if strings.HasPrefix(id, r.ids[v]+":") {
			ids = append(ids, id)
		}
	}
	return ids
}

// waitVersion waits until every bundle is Ready on every cluster at
// version v, read through the API (any client errors while the API is
// down are retried).
func (r *rollout) waitVersion(ctx context.Context, t *testing.T, v int, timeout time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var list fleetv1.BundleList
		if err := r.c.List(ctx, &list, client.InNamespace(rolloutNS)); err != nil {
			last = err.Error()
		} else {
			done := 0
			for _, b := range list.Items {
				if b.Spec.ContentsID == r.ids[v] && b.Status.ObservedGeneration == b.Generation &&
					b.Status.ReadyClusters == rolloutClusters && b.Status.DesiredReadyClusters == rolloutClusters {
					done++
				}
			}
			last = fmt.Sprintf("%d/%d bundles ready at version %d; agents run %d/%d deployments at it", done, rolloutBundles, v, r.progress(v), rolloutClusters*rolloutBundles)
			if done == rolloutBundles {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("rollout of version %d not complete after %s: %s", v, timeout, last)
}

// waitProgress waits until the agents run at least n deployments at v.
func (r *rollout) waitProgress(t *testing.T, v, n int) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d deployments at version %d", n, v), func() bool { return r.progress(v) >= n })
}

// check proves nothing was lost or duplicated: exactly one BundleDeployment
// per (bundle, cluster), each at version v, applied by its agent, and no
// deploy replayed without a reason.
func (r *rollout) check(ctx context.Context, t *testing.T, v int) {
	t.Helper()
	var clusters fleetv1.ClusterList
	if err := r.c.List(ctx, &clusters, client.InNamespace(rolloutNS)); err != nil {
		t.Fatal(err)
	}
	if len(clusters.Items) != rolloutClusters {
		t.Errorf("%d Clusters, want %d", len(clusters.Items), rolloutClusters)
	}
	var bds fleetv1.BundleDeploymentList
	if err := r.c.List(ctx, &bds); err != nil {
		t.Fatal(err)
	}
	pairs := map[string]int{}
	for _, bd := range bds.Items {
		pair := bd.Labels[fleetv1.BundleNameLabel] + "/" + bd.Labels[fleetv1.ClusterNameLabel]
		pairs[pair]++
		if !strings.HasPrefix(bd.Spec.DeploymentID, r.ids[v]+":") || bd.Status.AppliedDeploymentID != bd.Spec.DeploymentID {
			t.Errorf("BundleDeployment %s/%s (%s): deploymentID %s applied %s, want version %d applied", bd.Namespace, bd.Name, pair, bd.Spec.DeploymentID, bd.Status.AppliedDeploymentID, v)
		}
	}
	if len(bds.Items) != rolloutClusters*rolloutBundles || len(pairs) != rolloutClusters*rolloutBundles {
		t.Errorf("%d BundleDeployments for %d (bundle, cluster) pairs, want %d of each", len(bds.Items), len(pairs), rolloutClusters*rolloutBundles)
	}
	for pair, n := range pairs {
		if n != 1 {
			t.Errorf("(bundle, cluster) %s has %d BundleDeployments", pair, n)
		}
	}
	explained, needless, examples := r.agents.reapplies()
	t.Logf("agents deployed %d times for %d deployments × 2 versions; %d re-applies after a failed status write, %d needless",
		r.agents.totalApplies(), rolloutClusters*rolloutBundles, explained, needless)
	if needless > 0 {
		t.Errorf("%d needless re-applies, e.g. %v", needless, examples)
	}
}

// componentPID finds the embedded control plane's process by executable.
func componentPID(t *testing.T, dataDir, comm string) int {
	t.Helper()
	for _, pid := range harness.ProcessesMentioning(dataDir) {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		if err == nil && strings.TrimSpace(string(data)) == comm {
			return pid
		}
	}
	t.Fatalf("no %s process mentioning %s", comm, dataDir)
	return 0
}

// managerMetric reads one sample of the manager's /metrics.
func managerMetric(t *testing.T, m *harness.Manager, sample string) string {
	t.Helper()
	resp, err := m.AdminHTTP.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestControlPlaneKilledMidRollout: kube-apiserver, then etcd, are killed
// with SIGKILL while bundles roll out to 40 clusters in partitions. The
// manager restarts each in place and carries on, without restarting
// itself; the rollout completes with one BundleDeployment per pair and no
// deploy replayed.
func TestControlPlaneKilledMidRollout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := harness.StartManager(t, harness.ManagerOptions{})
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	r := startRollout(ctx, t, m.Client, cfg)
	managerPID := m.Pid()

	t0 := time.Now()
	r.upgrade(ctx, t, 2)
	total := rolloutClusters * rolloutBundles
	for i, comp := range []string{"kube-apiserver", "etcd"} {
		r.waitProgress(t, 2, (i+1)*total/5)
		pid := componentPID(t, m.DataDir, comp)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		t.Logf("killed %s (pid %d) with %d/%d deployments at the new version", comp, pid, r.progress(2), total)
		waitFor(t, 90*time.Second, comp+" restarted and the API answering", func() bool {
			var ns corev1.Namespace
			return m.Client.Get(ctx, client.ObjectKey{Name: rolloutNS}, &ns) == nil && componentPID(t, m.DataDir, comp) != pid
		})
		t.Logf("%s restarted, API answering %s after the kill", comp, time.Since(killed).Round(time.Millisecond))
	}
	r.waitVersion(ctx, t, 2, 3*time.Minute)
	t.Logf("rollout with two control-plane kills complete in %s", time.Since(t0).Round(time.Millisecond))

	if m.Pid() != managerPID || syscall.Kill(managerPID, 0) != nil {
		t.Errorf("the manager process did not survive (pid %d)", managerPID)
	}
	if strings.Contains(m.Output(), "control plane failed") {
		t.Errorf("the manager reported the control plane failed:\n%s", m.Output())
	}
	for _, comp := range []string{"kube-apiserver", "etcd"} {
		if got := managerMetric(t, m, `edgefleet_controlplane_restarts_total{component="`+comp+`"}`); got != "1" {
			t.Errorf("edgefleet_controlplane_restarts_total for %s = %q, want 1", comp, got)
		}
	}
	r.check(ctx, t, 2)
}

// TestLeaderKilledMidRollout: two replicas on an external cluster; the
// leader is killed with SIGKILL (no lease release) while bundles roll out.
// The standby takes the lease when it expires and completes the rollout,
// with one BundleDeployment per pair and no deploy replayed.
func TestLeaderKilledMidRollout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	a := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: cl.KubeconfigPath()})
	b := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: cl.KubeconfigPath()})
	var holder string
	waitFor(t, 60*time.Second, "a leader", func() bool {
		holder = leaseHolder(ctx, cl.Client)
		return holder != ""
	})
	r := startRollout(ctx, t, cl.Client, cl.RESTConfig())
	leader, standby := a, b
	if strings.Contains(b.Output(), "Became the leader") {
		leader, standby = b, a
	}

	r.upgrade(ctx, t, 2)
	r.waitProgress(t, 2, rolloutClusters*rolloutBundles/5)
	leader.Signal(syscall.SIGKILL)
	killed := time.Now()
	t.Logf("killed the leader with %d/%d deployments at the new version", r.progress(2), rolloutClusters*rolloutBundles)
	waitFor(t, 90*time.Second, "the standby to take the lease", func() bool {
		return strings.Contains(standby.Output(), "Became the leader") && leaseHolder(ctx, cl.Client) != holder
	})
	t.Logf("standby leader %s after the kill", time.Since(killed).Round(time.Millisecond))
	r.waitVersion(ctx, t, 2, 3*time.Minute)
	t.Logf("rollout complete %s after the kill", time.Since(killed).Round(time.Millisecond))
	r.check(ctx, t, 2)
}
