package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestDevClusterRunsDeploymentsOnFakeNodes runs `edgefleet dev-cluster` as a
// user would, deploys a 2-replica Deployment, waits for it to be Available on
// kwok nodes, then interrupts the command and checks that nothing is left.
func TestDevClusterRunsDeploymentsOnFakeNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dataDir := filepath.Join(t.TempDir(), "dev")
	cmd := exec.Command(harness.EdgefleetBinary(t), "dev-cluster", "--data-dir", dataDir, "--kube-bin-dir", harness.KubeBinDir(t), "--nodes", "2", "--unsafe-no-fsync")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	kubeconfig := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "kubeconfig:"); ok {
			kubeconfig = strings.TrimSpace(v)
			break
		}
	}
	if kubeconfig != filepath.Join(dataDir, "kubeconfig") {
		t.Fatalf("dev-cluster did not print its kubeconfig (got %q); stderr:\n%s", kubeconfig, stderr.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil || len(nodes.Items) != 2 {
		t.Fatalf("want 2 fake nodes, got %d (%v)", len(nodes.Items), err)
	}

	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if err := c.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the Deployment to become Available", func() bool {
		if err := c.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
			return false
		}
		return dep.Status.AvailableReplicas == 2
	})

	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev-cluster exit on SIGINT: %v\n%s", err, stderr.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatal("dev-cluster did not stop on SIGINT")
	}
	if pids := harness.ProcessesMentioning(dataDir); len(pids) > 0 {
		t.Fatalf("components left running: %v", pids)
	}
}

// TestHarnessStartsManagerAndThreeClusters is the shape of every fleet e2e
// test: one manager, three downstream clusters, all reachable.
func TestHarnessStartsManagerAndThreeClusters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	m, err := harness.LaunchManager(t, harness.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, 3, harness.ClusterOptions{})
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("manager + 3 downstream clusters up in %s", time.Since(start).Round(time.Millisecond))
	seen := map[string]bool{}
	for _, cl := range clusters {
		var ns corev1.Namespace
		if err := cl.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ns); err != nil {
			t.Fatal(err)
		}
		seen[string(ns.UID)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("clusters are not distinct: %d kube-system UIDs", len(seen))
	}
}
