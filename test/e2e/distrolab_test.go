package e2e

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgefleet/edgefleet/internal/imagebuild"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/kubeimages"
	"github.com/edgefleet/edgefleet/test/netlab"
)

// distroLab is what the tests that form edgefleet-distro clusters of real
// kubelets share: a loopback registry with the images the nodes pull (pause
// and hello as in TestKubeDistro, the fleet agent built from
// bin/edgefleet-agent, single-arch), a network lab whose gateway is the
// manager's external URL, and a namespace for the machines.
type distroLab struct {
	lab        *netlab.Lab
	reg        *kubeimages.Registry
	m          *harness.Manager
	l          *machineLab
	agentImage string
}

func startDistroLab(t *testing.T, subnet3, ns string) *distroLab {
	t.Helper()
	ctx := context.Background()
	reg := startNodeImageRegistry(t)
	agentBin := filepath.Join(filepath.Dir(harness.EdgefleetBinary(t)), "edgefleet-agent")
	caBundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := imagebuild.Build(imagebuild.Spec{Name: "edgefleet-agent", Binaries: map[string]string{"amd64": agentBin}, CABundle: caBundle, Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagebuild.Push(ctx, reg.Host+"/edgefleet/edgefleet-agent:e2e", idx); err != nil {
		t.Fatal(err)
	}
	agentImage := "edgefleet.test/edgefleet/edgefleet-agent:e2e"

	lab := netlab.New(t, subnet3)
	m := harness.StartManager(t, harness.ManagerOptions{ExternalHost: lab.Gateway(), Args: []string{"--agent-image", agentImage, "--tunnel-probe-interval", "2s"}})
	u, err := url.Parse(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if err := lab.ForwardGateway(port); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	l := &machineLab{m: m, ns: ns}
	_, l.caPEM = get(t, m, "/cacerts")
	return &distroLab{lab: lab, reg: reg, m: m, l: l, agentImage: agentImage}
}
