package clustergroup

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func clusterWith(name string, ready, desired int32) fleetv1.Cluster {
	c := fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Status.Summary = fleetv1.BundleSummary{DesiredReady: desired, Ready: ready, NotReady: desired - ready}
	c.Status.ReadyBundles, c.Status.DesiredReadyBundles = ready, desired
	return c
}

func TestComputeStatus(t *testing.T) {
	tests := []struct {
		name         string
		clusters     []fleetv1.Cluster
		wantCount    int32
		wantNonReady int32
		wantDisplay  string
		wantReady    metav1.ConditionStatus
		wantReason   string
		wantListed   int
		wantBundles  string
	}{
		{"no clusters", nil, 0, 0, "0/0", metav1.ConditionTrue, fleetv1.NoClustersReason, 0, "0/0"},
		{"all ready", []fleetv1.Cluster{clusterWith("a", 1, 1), clusterWith("b", 2, 2)}, 2, 0, "2/2", metav1.ConditionTrue, fleetv1.SucceededReason, 0, "3/3"},
		{"one not ready", []fleetv1.Cluster{clusterWith("a", 1, 1), clusterWith("b", 0, 2)}, 2, 1, "1/2", metav1.ConditionFalse, fleetv1.ClustersNotReadyReason, 1, "1/3"},
		{"list capped at 10", func() []fleetv1.Cluster {
			var cs []fleetv1.Cluster
			for i := range 12 {
				cs = append(cs, clusterWith(string(rune('a'+i)), 0, 1))
			}
			return cs
		}(), 12, 12, "0/12", metav1.ConditionFalse, fleetv1.ClustersNotReadyReason, 10, "0/12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st fleetv1.ClusterGroupStatus
			computeStatus(&st, tt.clusters, 1)
			if st.ClusterCount != tt.wantCount || st.NonReadyClusterCount != tt.wantNonReady || st.Display.ReadyClusters != tt.wantDisplay ||
				len(st.NonReadyClusters) != tt.wantListed || st.Display.ReadyBundles != tt.wantBundles {
				t.Errorf("status %+v", st)
			}
			c := meta.FindStatusCondition(st.Conditions, fleetv1.ReadyCondition)
			if c == nil || c.Status != tt.wantReady || c.Reason != tt.wantReason {
				t.Errorf("Ready = %+v", c)
			}
		})
	}
}
