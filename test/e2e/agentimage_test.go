package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// An air-gapped site points import manifests at its own registry's copy of
// the agent, pinned by digest; a reference no kubelet could pull is refused
// before the manager starts anything.
func TestAgentImageFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	t.Run("bad reference refused at start", func(t *testing.T) {
		m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: []string{"--agent-image", "Registry.local/UPPER case"}})
		if err != nil {
			t.Fatal(err)
		}
		code, err := m.Wait(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code == 0 || !strings.Contains(m.Output(), "--agent-image") || !strings.Contains(m.Output(), "registry/repository") {
			t.Fatalf("exit %d, output does not explain the bad --agent-image:\n%s", code, m.Output())
		}
	})
	t.Run("import manifest runs the configured image", func(t *testing.T) {
		pinned := "registry.local:5000/edgefleet/edgefleet-agent@sha256:" + strings.Repeat("ab", 32)
		m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--agent-image", pinned}})
		if err := m.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
			t.Fatal(err)
		}
		_, token, _ := createToken(t, m, "1h")
		code, manifest := get(t, m, clusterjoin.ImportPathPrefix+token+".yaml")
		if code != http.StatusOK {
			t.Fatalf("import manifest: %d %s", code, manifest)
		}
		if !strings.Contains(manifest, "image: "+pinned+"\n") {
			t.Fatalf("import manifest does not run %s:\n%s", pinned, manifest)
		}
	})
}
