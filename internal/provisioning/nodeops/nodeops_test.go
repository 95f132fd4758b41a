package nodeops

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDrainedPods(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"a Deployment's pod moves", corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Controller: &yes}}}}, true},
		{"a bare pod moves", corev1.Pod{}, true},
		{"a DaemonSet's pod stays", corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Controller: &yes}}}}, false},
		{"a mirror pod stays", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "x"}}}, false},
		{"a finished pod does not matter", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, false},
	} {
		if got := drained(&tc.pod); got != tc.want {
			t.Errorf("%s: drained = %v", tc.name, got)
		}
	}
}

func TestDownstreamRBACIsLeastPrivilege(t *testing.T) {
	rbac := string(DownstreamRBAC())
	for _, want := range []string{"name: " + DownstreamUser(), "pods/eviction", "kind: ClusterRoleBinding"} {
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
