package cluster

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNamespaceName(t *testing.T) {
	tests := []struct {
		ns, name, wantPrefix string
	}{
		{"fleet-default", "local", "cluster-fleet-default-local-"},
		{"fleet", "My.Cluster", "cluster-fleet-my-cluster-"},
		{"fleet", strings.Repeat("x", 200), "cluster-fleet-xxxx"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := NamespaceName(tt.ns, tt.name)
		if !strings.HasPrefix(got, tt.wantPrefix) {
			t.Errorf("NamespaceName(%q, %q) = %q, want prefix %q", tt.ns, tt.name, got, tt.wantPrefix)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("NamespaceName(%q, %q) = %q is not a valid namespace name: %v", tt.ns, tt.name, got, errs)
		}
		if got != NamespaceName(tt.ns, tt.name) {
			t.Error("NamespaceName is not deterministic")
		}
		seen[got] = true
	}
	// Names that read the same after cleaning still differ by hash.
	if NamespaceName("a-b", "c") == NamespaceName("a", "b-c") {
		t.Error("a-b/c and a/b-c share a namespace")
	}
}
