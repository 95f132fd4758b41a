package nodeops

import (
	"strings"
	"testing"
)

func TestDownstreamRBACIsLeastPrivilege(t *testing.T) {
	rbac := string(DownstreamRBAC())
	for _, want := range []string{"name: " + DownstreamUser(), "pods/eviction", "leases", "kind: ClusterRoleBinding"} {
		if !strings.Contains(rbac, want) {
			t.Errorf("downstream RBAC lacks %q:\n%s", want, rbac)
		}
	}
	for _, never := range []string{"'*'", "secrets", "escalate", "impersonate"} {
		if strings.Contains(rbac, never) {
			t.Errorf("downstream RBAC grants %q:\n%s", never, rbac)
		}
	}
	if DownstreamUser() != "edgefleet:sa:edgefleet-system:edgefleet-formation" {
		t.Fatalf("downstream user = %s (docs/tunnel.md's mapping of a manager ServiceAccount)", DownstreamUser())
	}
}

func TestSummary(t *testing.T) {
	if got := Summary([]string{"a", "b", "c", "d", "e", "f", "g"}); got != "a, b, c, d, e and 2 more" {
		t.Fatal(got)
	}
}
