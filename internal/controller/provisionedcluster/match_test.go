package provisionedcluster

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

// TestWants: a free inventory's event wakes only clusters a pool of which
// selects it.
func TestWants(t *testing.T) {
	pc := &provisioningv1.ProvisionedCluster{Spec: provisioningv1.ProvisionedClusterSpec{
		ControlPlane: provisioningv1.MachinePool{MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"site": "a", "role": "server"}}},
		Workers: []provisioningv1.WorkerPool{{Name: "gpu", MachinePool: provisioningv1.MachinePool{
			MachineSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "gpu", Operator: metav1.LabelSelectorOpExists}}}}}},
	}}
	bad := pc.DeepCopy()
	bad.Spec.Workers[0].MachineSelector.MatchExpressions[0].Operator = "Near"
	for _, tc := range []struct {
		name   string
		pc     *provisioningv1.ProvisionedCluster
		labels map[string]string
		want   bool
	}{
		{"control-plane selector", pc, map[string]string{"site": "a", "role": "server"}, true},
		{"worker selector", pc, map[string]string{"gpu": "h100"}, true},
		{"another site", pc, map[string]string{"site": "b", "role": "server"}, false},
		{"no labels", pc, nil, false},
		{"selector that does not parse: stalled, wants nothing", bad, map[string]string{"site": "a", "role": "server"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wants(tc.pc, labels.Set(tc.labels)); got != tc.want {
				t.Fatalf("wants = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestShort: which clusters shortIndex lists (a free inventory may concern them).
func TestShort(t *testing.T) {
	formed := &provisioningv1.ProvisionedCluster{
		ObjectMeta: metav1.ObjectMeta{Generation: 2},
		Spec: provisioningv1.ProvisionedClusterSpec{
			ControlPlane: provisioningv1.MachinePool{Replicas: 1},
			Workers:      []provisioningv1.WorkerPool{{Name: "w", MachinePool: provisioningv1.MachinePool{Replicas: 2}}},
		},
		Status: provisioningv1.ProvisionedClusterStatus{ObservedGeneration: 2,
			ControlPlane: provisioningv1.PoolStatus{Current: 1}, Workers: []provisioningv1.PoolStatus{{Name: "w", Current: 2}}},
	}
	changed := formed.DeepCopy()
	changed.Generation = 3
	cpShort := formed.DeepCopy()
	cpShort.Status.ControlPlane.Current = 0
	workerShort := formed.DeepCopy()
	workerShort.Status.Workers[0].Current = 1
	for _, tc := range []struct {
		name string
		pc   *provisioningv1.ProvisionedCluster
		want bool
	}{
		{"formed", formed, false},
		{"spec not yet seen", changed, true},
		{"control plane short", cpShort, true},
		{"worker pool short", workerShort, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := short(tc.pc); got != tc.want {
				t.Fatalf("short = %v, want %v", got, tc.want)
			}
		})
	}
}
