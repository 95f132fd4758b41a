package clusterproxy

import (
	"net/http"
	"slices"
	"testing"

	"github.com/edgefleet/edgefleet/internal/authn"
)

// TestDownstreamIdentityNeverReplaysSystemIdentities: no manager user or
// group that means something to a Kubernetes API server reaches the
// downstream cluster as it is, and the mapping is injective on names.
func TestDownstreamIdentityNeverReplaysSystemIdentities(t *testing.T) {
	for _, tc := range []struct {
		in       authn.User
		wantName string
		want     []string
	}{
		{authn.User{Name: "system:serviceaccount:fleet-default:edgefleet-agent", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:fleet-default", "system:authenticated"}},
			"edgefleet:sa:fleet-default:edgefleet-agent", nil},
		{authn.User{Name: "kubernetes-admin", Groups: []string{"system:masters", "system:authenticated"}}, "kubernetes-admin", []string{ManagerAdminsGroup}},
		{authn.User{Name: "system:admin", Groups: []string{"system:masters"}}, "edgefleet:system:admin", []string{ManagerAdminsGroup}},
		{authn.User{Name: "system:node:n1", Groups: []string{"system:nodes"}}, "edgefleet:system:node:n1", nil},
		{authn.User{Name: "edgefleet:sa:kube-system:x", Groups: []string{"edgefleet:manager-admins", "edgefleet:managers"}}, "edgefleet:edgefleet:sa:kube-system:x", nil},
		{authn.User{Name: "alice", Groups: []string{"dev", "ops", "dev"}}, "alice", []string{"dev", "ops"}},
	} {
		got := DownstreamIdentity(&tc.in)
		if got.Name != tc.wantName || !slices.Equal(got.Groups, tc.want) {
			t.Errorf("%s %v -> %s %v, want %s %v", tc.in.Name, tc.in.Groups, got.Name, got.Groups, tc.wantName, tc.want)
		}
		h := http.Header{"Impersonate-Group": {"system:masters"}, "Authorization": {"Bearer x"}}
		setIdentity(h, &tc.in)
		if h.Get("Authorization") != "" || slices.Contains(h.Values("Impersonate-Group"), "system:masters") || h.Get("Impersonate-User") != tc.wantName {
			t.Errorf("headers for %s: %v", tc.in.Name, h)
		}
	}
}
