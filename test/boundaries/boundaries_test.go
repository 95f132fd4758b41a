// Package boundaries checks that the binaries meant for small devices do not
// link the control plane, the manager or Kubernetes server code.
package boundaries

import (
	"os/exec"
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
