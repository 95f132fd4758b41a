// Package e2e runs edgefleet as users do: real binaries, real control planes,
// real HTTPS, driven from the outside.
package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/crds"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/test/harness"
)

func get(t *testing.T, m *harness.Manager, path string) (int, string) {
	t.Helper()
	resp, err := m.HTTP.Get(m.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// adminGet is get with the admin kubeconfig's client certificate.
func adminGet(t *testing.T, m *harness.Manager, path string) (int, string) {
	t.Helper()
	resp, err := m.AdminHTTP.Get(m.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestEmbeddedServerServesAndPersists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dataDir := filepath.Join(t.TempDir(), "data")
	m := harness.StartManager(t, harness.ManagerOptions{DataDir: dataDir})

	if code, body := get(t, m, "/ping"); code != http.StatusOK || body != "pong" {
		t.Fatalf("/ping = %d %q, want 200 pong", code, body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, m, path); code != http.StatusOK {
			t.Fatalf("%s = %d", path, code)
		}
	}
	code, caPEM := get(t, m, "/cacerts")
	if code != http.StatusOK || pki.Checksum([]byte(caPEM)) != m.CAChecksum {
		t.Fatalf("/cacerts does not match the printed checksum %s", m.CAChecksum)
	}
	if code, body := adminGet(t, m, "/metrics"); code != http.StatusOK || !strings.Contains(body, "edgefleet_build_info") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d, missing edgefleet_build_info or go_goroutines", code)
	}
	if m.Kubeconfig != filepath.Join(dataDir, "kubeconfig") {
		t.Fatalf("kubeconfig printed as %s, want it at <data-dir>/kubeconfig", m.Kubeconfig)
	}

	var list apiextensionsv1.CustomResourceDefinitionList
	if err := m.Client.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, crd := range list.Items {
		have[crd.Name] = true
	}
	for _, name := range crds.Names() {
		if !have[name] {
			t.Errorf("CRD %s not installed", name)
		}
	}

	group := &fleetv1.ClusterGroup{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "default"},
		Spec:       fleetv1.ClusterGroupSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "edge"}}},
	}
	if err := m.Client.Create(ctx, group); err != nil {
		t.Fatal(err)
	}

	// Clean stop: exit 0, no child left, port released.
	addr := strings.TrimPrefix(m.URL, "https://")
	m.Signal(syscall.SIGTERM)
	if code, err := m.Wait(45 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v\n%s", code, err, m.Output())
	}
	if pids := harness.ProcessesMentioning(dataDir); len(pids) > 0 {
		t.Fatalf("processes left running after stop: %v", pids)
	}
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Fatalf("port %s still bound after stop: %v", addr, err)
	} else {
		l.Close()
	}

	// Restart on the same data dir keeps objects, CA and kubeconfig.
	again := harness.StartManager(t, harness.ManagerOptions{DataDir: dataDir})
	if again.CAChecksum != m.CAChecksum {
		t.Fatalf("CA changed across restart: %s -> %s", m.CAChecksum, again.CAChecksum)
	}
	var got fleetv1.ClusterGroup
	if err := again.Client.Get(ctx, client.ObjectKeyFromObject(group), &got); err != nil {
		t.Fatalf("object lost across restart: %v", err)
	}
	if got.Spec.Selector == nil || got.Spec.Selector.MatchLabels["env"] != "edge" {
		t.Fatalf("object changed across restart: %+v", got.Spec)
	}
}

func TestDataDirLockRefusesSecondServer(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	first := harness.StartManager(t, harness.ManagerOptions{DataDir: dataDir})
	before, err := os.ReadFile(filepath.Join(dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}

	second, err := harness.LaunchManager(t, harness.ManagerOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	code, err := second.Wait(15 * time.Second)
	if err != nil {
		t.Fatalf("second server did not fail at once: %v", err)
	}
	if code == 0 || !strings.Contains(second.Output(), "in use by another edgefleet process") {
		t.Fatalf("second server: exit %d, output:\n%s", code, second.Output())
	}
	after, _ := os.ReadFile(filepath.Join(dataDir, "kubeconfig"))
	if string(before) != string(after) {
		t.Fatal("second server rewrote the first one's kubeconfig")
	}
	if code, body := get(t, first, "/ping"); code != http.StatusOK || body != "pong" {
		t.Fatalf("first server hurt by the second: /ping = %d %q", code, body)
	}
}
