package clusterproxy

import "testing"

func TestParseClusterPath(t *testing.T) {
	for _, tc := range []struct{ in, ref, rest string }{
		{"/k8s/clusters/fleet-default.edge-1/api/v1/namespaces", "fleet-default.edge-1", "/api/v1/namespaces"},
		{"/k8s/clusters/edge-1", "edge-1", "/"},
		{"/k8s/clusters/edge-1/", "edge-1", "/"},
	} {
		ref, rest, ok := parseClusterPath(tc.in)
		if !ok || ref != tc.ref || rest != tc.rest {
			t.Fatalf("parseClusterPath(%q) = %q %q %v", tc.in, ref, rest, ok)
		}
	}
	if _, _, ok := parseClusterPath("/k8s/clusters/"); ok {
		t.Fatal("empty cluster reference accepted")
	}
}
