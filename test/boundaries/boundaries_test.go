// Package boundaries checks that the binaries meant for small devices do not
// link the control plane, the manager or Kubernetes server code.
package boundaries

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestDeviceBinariesStaySmall(t *testing.T) {
	forbidden := []string{
		"github.com/edgefleet/edgefleet/internal/controlplane",
		"github.com/edgefleet/edgefleet/internal/server",
		"k8s.io/kubernetes",
		"go.etcd.io/etcd/server",
	}
	for _, pkg := range []string{"./cmd/edgefleet-agent", "./cmd/edgefleet-node"} {
		t.Run(pkg, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", pkg)
			cmd.Dir = "../.."
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s links %s", pkg, dep)
					}
				}
			}
		})
	}
}

// TestSidesLinkOnlyTheirOwnPackages keeps code where it runs: the manager
// never links node-side code, the node and the cluster agent never link the
// manager's controllers. Contracts both sides share live in internal/wire.
func TestSidesLinkOnlyTheirOwnPackages(t *testing.T) {
	const mod = "github.com/edgefleet/edgefleet/internal/"
	// The agent writes BundleDeployment status with the controllers' status
	// toolkit (one truncation rule), never their reconcilers.
	allowed := map[string][]string{"./cmd/edgefleet-agent": {mod + "controller/conditions"}}
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"./cmd/edgefleet", []string{mod + "node"}},
		{"./internal/server", []string{mod + "node", mod + "agent"}},
		{"./cmd/edgefleet-node", []string{mod + "controller", mod + "agent", mod + "clusterregistration", mod + "machineregistration", mod + "seedimage"}},
		// The node agent speaks to the API with plain HTTPS
		// (internal/node/agent): client-go's typed clients and the API
		// types would quadruple the machine's binary.
		{"./cmd/edgefleet-node", []string{"k8s.io/client-go", "k8s.io/api", "k8s.io/apimachinery"}},
		{"./cmd/edgefleet-agent", []string{mod + "controller", mod + "node", mod + "clusterregistration", mod + "machineregistration"}},
		// Data flows one way: controllers call capability packages, never
		// the reverse.
		{"./internal/clusterproxy", []string{mod + "controller"}},
		{"./internal/clusterregistration", []string{mod + "controller"}},
		{"./internal/machineregistration", []string{mod + "controller"}},
		{"./internal/seedimage", []string{mod + "controller"}},
		{"./internal/gitops/...", []string{mod + "controller"}},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", r.pkg)
			cmd.Dir = "../.."
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if slices.Contains(allowed[r.pkg], dep) {
					continue
				}
				for _, f := range r.forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s links %s", r.pkg, dep)
					}
				}
			}
		})
	}
}
