package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Version skew (issue #20 scenario 5): a manager upgraded to a new minor
// version keeps serving agents one minor older (shown as AgentOutdated) and
// even older ones (AgentUnsupported): both keep receiving bundles and
// reporting status, so the agent upgrade bundle can still reach them.
//
// The repository has no earlier release tag to build an old agent from, so
// the binaries are this checkout stamped with other versions
// (harness.BuildWithVersion), exactly as `make build` stamps a release.
func TestAgentVersionSkew(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	const managerVersion = "v0.9.1"
	mgrBin := harness.BuildWithVersion(t, "edgefleet", managerVersion)
	agents := map[string]string{ // version → wanted reason
		"v0.8.3": fleetv1.AgentOutdatedReason,
		"v0.7.0": fleetv1.AgentUnsupportedReason,
	}
	m := harness.StartManager(t, harness.ManagerOptions{Binary: mgrBin})
	ctx := context.Background()
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, len(agents), harness.ClusterOptions{})
	_, token, _ := createToken(t, m, "1h")
	ids := map[string]string{} // clientID → agent version
	i := 0
	for v := range agents {
		bin := harness.BuildWithVersion(t, "edgefleet-agent", v)
		id := "skew-" + v
		ids[id] = v
		cmd := exec.Command(bin, "run", "--server", m.URL, "--token", token, "--ca-checksum", m.CAChecksum,
			"--kubeconfig", clusters[i].KubeconfigPath(), "--client-id", id, "--heartbeat-interval", "1s", "--monitor-interval", "2s")
		log, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				t.Logf("agent %s:\n%s", v, b)
			}
		})
		i++
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: skew\n  namespace: default\ndata:\n  k: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(harness.EdgefleetBinary(t), "apply", "-n", fleetNS, "--kubeconfig", m.Kubeconfig, "skew", dir).CombinedOutput(); err != nil {
		t.Fatalf("edgefleet apply: %v\n%s", err, out)
	}

	for id, v := range ids {
		var got *fleetv1.Cluster
		waitFor(t, 90*time.Second, "cluster of agent "+v+" ready with its bundle and version reported", func() bool {
			got = clusterByClientID(ctx, m.Client, id)
			if got == nil || got.Status.Agent.Version != v || got.Status.DesiredReadyBundles != 1 {
				return false
			}
			c := meta.FindStatusCondition(got.Status.Conditions, fleetv1.AgentSupportedCondition)
			return c != nil && c.Reason == agents[v] && got.Status.ReadyBundles == 1 && meta.IsStatusConditionTrue(got.Status.Conditions, fleetv1.ReadyCondition)
		})
		c := meta.FindStatusCondition(got.Status.Conditions, fleetv1.AgentSupportedCondition)
		t.Logf("agent %s on manager %s: AgentSupported=%s %s: %s", v, managerVersion, c.Status, c.Reason, c.Message)
		wantStatus := metav1.ConditionTrue
		if agents[v] == fleetv1.AgentUnsupportedReason {
			wantStatus = metav1.ConditionFalse
		}
		if c.Status != wantStatus {
			t.Errorf("agent %s: AgentSupported %s, want %s", v, c.Status, wantStatus)
		}
	}
	// The bundle really reached both clusters: the agents applied it.
	for i, cl := range clusters {
		var cm corev1.ConfigMap
		if err := cl.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "skew"}, &cm); err != nil || cm.Data["k"] != "v1" {
			t.Errorf("cluster %d: ConfigMap skew not deployed: %v %v", i, err, cm.Data)
		}
	}
}
