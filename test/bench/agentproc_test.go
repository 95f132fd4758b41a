package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/tmpguard"
)

const agentNS = "fleet-default"

var (
	buildMu   sync.Mutex
	binDirTmp string
)

// benchBinary is bin/<name> next to $EDGEFLEET_BIN (what `make build`
// made), or one built once with the Makefile's flags.
func benchBinary(t *testing.T, name string) string {
	t.Helper()
	if p := os.Getenv(harness.EnvEdgefleetBin); p != "" {
		if name == "edgefleet" {
			return p
		}
		if cand := filepath.Join(filepath.Dir(p), name); fileExists(cand) {
			return cand
		}
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDirTmp == "" {
		dir, err := os.MkdirTemp("", "edgefleet-bench-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDirTmp = dir
		tmpguard.AtExit(func() { _ = os.RemoveAll(dir) })
	}
	out := filepath.Join(binDirTmp, name)
	if fileExists(out) {
		return out
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, b)
	}
	return out
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

var tokenLine = regexp.MustCompile(`(?m)^Token (\S+)/(\S+) \(valid until [^)]*\):\n  (\S+)$`)

// agentProc is a running `edgefleet-agent run` joined to the manager.
type agentProc struct {
	cmd       *exec.Cmd
	out       *syncBuffer
	Cluster   string // the Cluster object's name on the manager
	Namespace string // its status.namespace, where its BundleDeployments are
}

// joinAgent starts the edgefleet-agent binary for cl with a fresh
// registration token and waits until its Cluster is Connected.
func joinAgent(t *testing.T, m *harness.Manager, cl *harness.Cluster, extraArgs ...string) *agentProc {
	t.Helper()
	ctx := context.Background()
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.EdgefleetBinary(t), "token", "create", "--kubeconfig", m.Kubeconfig, "-n", agentNS, "--ttl", "1h").CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet token create: %v\n%s", err, out)
	}
	g := tokenLine.FindStringSubmatch(string(out))
	if g == nil {
		t.Fatalf("no token in `edgefleet token create` output:\n%s", out)
	}
	var ks corev1.Namespace
	if err := cl.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--server", m.URL, "--token", g[3], "--ca-checksum", m.CAChecksum, "--kubeconfig", cl.KubeconfigPath()}, extraArgs...)
	a := &agentProc{cmd: exec.Command(benchBinary(t, "edgefleet-agent"), args...), out: &syncBuffer{}}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = a.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("edgefleet-agent output:\n%s", a.out.String())
		}
	})
	waitFor(t, 90*time.Second, "the agent's Cluster to be Connected", func() bool {
		var l fleetv1.ClusterList
		if m.Client.List(ctx, &l, client.InNamespace(agentNS)) != nil {
			return false
		}
		for _, c := range l.Items {
			cond := meta.FindStatusCondition(c.Status.Conditions, fleetv1.ConnectedCondition)
			if c.Spec.ClientID == string(ks.UID) && cond != nil && cond.Status == metav1.ConditionTrue && c.Status.Namespace != "" {
				a.Cluster, a.Namespace = c.Name, c.Status.Namespace
				return true
			}
		}
		return false
	})
	return a
}

func (a *agentProc) Pid() int { return a.cmd.Process.Pid }

// proxyKubeconfig writes `edgefleet kubeconfig` for the agent's cluster:
// kubectl through https://<manager>/k8s/clusters/<ns>.<name>.
func (a *agentProc) proxyKubeconfig(t *testing.T, m *harness.Manager) string {
	t.Helper()
	out, err := exec.Command(harness.EdgefleetBinary(t), "kubeconfig", a.Cluster, "-n", agentNS, "--kubeconfig", m.Kubeconfig).Output()
	if err != nil {
		t.Fatalf("edgefleet kubeconfig: %v", err)
	}
	p := filepath.Join(t.TempDir(), "proxy.kubeconfig")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "/k8s/clusters/") {
		t.Fatalf("kubeconfig from `edgefleet kubeconfig` does not go through /k8s/clusters/:\n%s", out)
	}
	return p
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
