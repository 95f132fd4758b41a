package clusterregistration

import (
	"reflect"
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func TestFilterLabelsDropsReservedAndInvalid(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          map[string]string
		kept        map[string]string
		droppedKeys []string
	}{
		{"plain labels kept", map[string]string{"env": "prod", "example.com/zone": "a"}, map[string]string{"env": "prod", "example.com/zone": "a"}, nil},
		{"reserved domain dropped", map[string]string{"edgefleet.io/x": "1", "env": "dev"}, map[string]string{"env": "dev"}, []string{"edgefleet.io/x"}},
		{"reserved subdomains dropped", map[string]string{"fleet.edgefleet.io/cluster": "b", "A.EdgeFleet.io/y": "z"}, map[string]string{}, []string{"A.EdgeFleet.io/y", "fleet.edgefleet.io/cluster"}},
		{"lookalike domain kept", map[string]string{"notedgefleet.io/x": "1"}, map[string]string{"notedgefleet.io/x": "1"}, nil},
		{"invalid key or value dropped", map[string]string{"bad key": "v", "ok": "bad value!"}, map[string]string{}, []string{"bad key", "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept, dropped := FilterLabels(tc.in)
			if !reflect.DeepEqual(kept, tc.kept) || !reflect.DeepEqual(dropped, tc.droppedKeys) {
				t.Fatalf("FilterLabels(%v) = %v, %v; want %v, %v", tc.in, kept, dropped, tc.kept, tc.droppedKeys)
			}
		})
	}
}

func TestClusterNameIsStablePerClientID(t *testing.T) {
	if ClusterName("a") != ClusterName("a") || ClusterName("a") == ClusterName("b") || len(ClusterName("x")) != len("cluster-")+24 {
		t.Fatal("ClusterName must be deterministic, distinct per clientID, cluster-<24 hex>")
	}
}

func TestMergeAgentLabelsKeepsAdminLabels(t *testing.T) {
	c := &fleetv1.Cluster{}
	c.Labels = map[string]string{"env": "prod", "zone": "z1", "tier": "gold"}
	// The agent set env=dev and zone=z1; an admin changed env to prod and
	// added tier.
	c.Annotations = map[string]string{fleetv1.AgentLabelsAnnotation: `{"env":"dev","zone":"z1"}`}
	kept := mergeAgentLabels(c, map[string]string{"env": "test", "zone": "z2", "tier": "free", "new": "1"})
	want := map[string]string{"env": "prod", "zone": "z2", "tier": "gold", "new": "1"}
	if !reflect.DeepEqual(c.Labels, want) || !reflect.DeepEqual(kept, []string{"env", "tier"}) {
		t.Fatalf("labels %v kept %v; want %v kept [env tier]", c.Labels, kept, want)
	}
	if got := agentLabels(c); !reflect.DeepEqual(got, map[string]string{"zone": "z2", "new": "1"}) {
		t.Fatalf("agent-owned labels %v, want zone and new", got)
	}
}
