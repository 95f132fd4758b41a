package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestBackupAndRestore: a manager with a joined cluster and objects is backed
// up while running, stopped, restored into a new data dir and started from
// it: every object is there, the CA (agents' pin) is the same, the agent
// reconnects on its stored credential and a new bundle reaches it. Corrupt
// and truncated archives are refused with nothing written.
func TestBackupAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	ctx := context.Background()
	port := freePort(t)
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--cluster-offline-threshold", "8s", "--tunnel-probe-interval", "1s"}
	m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, 1, harness.ClusterOptions{})
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	bin := harness.EdgefleetBinary(t)
	for _, ns := range []string{fleetNS, "machines"} {
		if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	tokenName, token, _ := createToken(t, m, "1h")
	var ks corev1.Namespace
	if err := clusters[0].Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	id := string(ks.UID)
	startJoinAgent(t, clusters[0], join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum})
	var clusterName string
	waitFor(t, 60*time.Second, "cluster Connected", func() bool {
		c := clusterByClientID(ctx, m.Client, id)
		if c == nil || connectedReason(c) != "True/"+fleetv1.AgentConnectedReason {
			return false
		}
		clusterName = c.Name
		return true
	})
	apply := func(kubeconfig, name, value string) {
		t.Helper()
		repo := t.TempDir()
		writeTree(t, repo, map[string]string{
			name + "/fleet.yaml": "defaultNamespace: restored\ntargets:\n- clusterSelector: {}\n",
			name + "/cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  v: \"" + value + "\"\n",
		})
		if out, err := exec.Command(bin, "apply", "-n", fleetNS, "--kubeconfig", kubeconfig, name, repo).CombinedOutput(); err != nil {
			t.Fatalf("edgefleet apply: %v\n%s", err, out)
		}
		waitFor(t, 90*time.Second, "bundle "+name+" on the cluster", func() bool {
			cm, err := configMap(ctx, clusters[0].Client, "restored", name)
			return err == nil && cm.Data["v"] == value
		})
	}
	apply(m.Kubeconfig, "before", "1")
	// Without the token, the restored manager can only be reached on the
	// agent's stored credential: a re-registration would be refused.
	if err := m.Client.Delete(ctx, &fleetv1.ClusterRegistrationToken{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: tokenName}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "kept"}, Spec: fleetv1.GitRepoSpec{Repo: "https://git.invalid/fleet.git", Branch: "main"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: "machines", Name: "lab"}}); err != nil {
		t.Fatal(err)
	}
	bundles := func(c client.Client) []string {
		var l fleetv1.BundleList
		if err := c.List(ctx, &l, client.InNamespace(fleetNS)); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range l.Items {
			names = append(names, b.Name)
		}
		sort.Strings(names)
		return names
	}
	bundlesBefore := bundles(m.Client)

	dir := t.TempDir()
	archive := filepath.Join(dir, "edgefleet.tar.gz")
	t0 := time.Now()
	out, err := exec.Command(bin, "backup", "--data-dir", m.DataDir, "-o", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet backup: %v\n%s", err, out)
	}
	backupTime := time.Since(t0)
	if !strings.Contains(string(out), "online snapshot") {
		t.Fatalf("backup of a running server: %s, want an online snapshot", out)
	}
	st, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("archive mode %v, want 0600 (it holds the CA keys)", st.Mode().Perm())
	}
	t.Logf("online backup: %s in %v (%s)", humanBytes(st.Size()), backupTime.Round(time.Millisecond), strings.TrimSpace(string(out)))
	m.Stop()

	restore := func(from, to string) (string, error) {
		out, err := exec.Command(bin, "restore", "--from", from, "--data-dir", to).CombinedOutput()
		return string(out), err
	}
	t.Run("bad archives are refused and nothing is written", func(t *testing.T) {
		good, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		flipped := append([]byte(nil), good...)
		flipped[len(flipped)/2] ^= 0xff
		for _, c := range []struct {
			name string
			data []byte
			want string
		}{
			{"truncated", good[:len(good)/2], "unusable"},
			{"corrupt", flipped, "unusable"},
			{"not a backup", []byte("hello"), "not a gzip'd edgefleet backup"},
		} {
			bad := filepath.Join(t.TempDir(), c.name+".tar.gz")
			if err := os.WriteFile(bad, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			target := filepath.Join(parent, "data")
			out, err := restore(bad, target)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("%s archive: err %v, output %q; want an error saying %q", c.name, err, out, c.want)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("%s archive: restore left %v behind", c.name, left)
			}
			t.Logf("%s: %s", c.name, strings.TrimSpace(out))
		}
		if out, err := restore(archive, m.DataDir); err == nil || !strings.Contains(out, "not empty") {
			t.Errorf("restore into the live data dir: err %v, output %q; want a refusal", err, out)
		}
	})

	t.Run("offline backup of a stopped server restores", func(t *testing.T) {
		offline := filepath.Join(t.TempDir(), "offline.tar.gz")
		out, err := exec.Command(bin, "backup", "--data-dir", m.DataDir, "-o", offline).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "offline snapshot") {
			t.Fatalf("offline backup: %v\n%s", err, out)
		}
		if out, err := restore(offline, filepath.Join(t.TempDir(), "data")); err != nil {
			t.Fatalf("restore of an offline backup: %v\n%s", err, out)
		}
	})

	restored := filepath.Join(dir, "restored")
	t0 = time.Now()
	if out, err := restore(archive, restored); err != nil {
		t.Fatalf("edgefleet restore: %v\n%s", err, out)
	}
	restoreTime := time.Since(t0)
	t0 = time.Now()
	m2 := harness.StartManager(t, harness.ManagerOptions{DataDir: restored, Args: args})
	t.Logf("restore %v, then server start to ready %v", restoreTime.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if m2.CAChecksum != m.CAChecksum {
		t.Fatalf("restored manager's CA checksum %s, want %s (agents pin it)", m2.CAChecksum, m.CAChecksum)
	}
	if got := bundles(m2.Client); strings.Join(got, ",") != strings.Join(bundlesBefore, ",") {
		t.Fatalf("bundles after restore %v, want %v", got, bundlesBefore)
	}
	if err := m2.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "kept"}, &fleetv1.GitRepo{}); err != nil {
		t.Fatalf("GitRepo after restore: %v", err)
	}
	if err := m2.Client.Get(ctx, client.ObjectKey{Namespace: "machines", Name: "lab"}, &machinesv1.MachineRegistration{}); err != nil {
		t.Fatalf("MachineRegistration after restore: %v", err)
	}
	started := time.Now()
	waitFor(t, 90*time.Second, "agent reconnected to the restored manager on its stored credential", func() bool {
		c := clusterByClientID(ctx, m2.Client, id)
		return c != nil && c.Name == clusterName && connectedReason(c) == "True/"+fleetv1.AgentConnectedReason &&
			c.Status.Agent.LastSeen.After(started)
	})
	t.Logf("agent reconnected %v after the restored manager was ready", time.Since(started).Round(time.Millisecond))
	apply(m2.Kubeconfig, "after", "2")
}

func humanBytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
