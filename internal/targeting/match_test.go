package targeting

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func cluster(name string, labels map[string]string) *fleetv1.Cluster {
	return &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, Labels: labels}}
}

func group(name string, labels map[string]string, sel *metav1.LabelSelector) *fleetv1.ClusterGroup {
	return &fleetv1.ClusterGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, Labels: labels}, Spec: fleetv1.ClusterGroupSpec{Selector: sel}}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func TestMatches(t *testing.T) {
	dev := cluster("c-dev", map[string]string{"env": "dev", fleetv1.ClusterDisplayNameLabel: "pretty"})
	prod := cluster("c-prod", map[string]string{"env": "prod"})
	devGroup := group("devs", map[string]string{"tier": "low"}, sel("env", "dev"))
	nilSelGroup := group("nobody", nil, nil)
	otherNS := group("devs-elsewhere", nil, sel("env", "dev"))
	otherNS.Namespace = "other"
	groups := []*fleetv1.ClusterGroup{devGroup, nilSelGroup, otherNS}
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Bogus"}}}

	tests := []struct {
		name    string
		c       Criteria
		cluster *fleetv1.Cluster
		want    bool
	}{
		{"no criteria matches nothing", Criteria{}, dev, false},
		{"empty clusterSelector matches all", Criteria{ClusterSelector: &metav1.LabelSelector{}}, prod, true},
		{"clusterSelector matches labels", Criteria{ClusterSelector: sel("env", "dev")}, dev, true},
		{"clusterSelector mismatch", Criteria{ClusterSelector: sel("env", "dev")}, prod, false},
		{"clusterName by name", Criteria{ClusterName: "c-prod"}, prod, true},
		{"clusterName by display-name label", Criteria{ClusterName: "pretty"}, dev, true},
		{"clusterName mismatch", Criteria{ClusterName: "other"}, dev, false},
		{"clusterGroup member", Criteria{ClusterGroup: "devs"}, dev, true},
		{"clusterGroup non-member", Criteria{ClusterGroup: "devs"}, prod, false},
		{"group with absent selector has no members", Criteria{ClusterGroup: "nobody"}, dev, false},
		{"group in another namespace is ignored", Criteria{ClusterGroup: "devs-elsewhere"}, dev, false},
		{"clusterGroupSelector on group labels", Criteria{ClusterGroupSelector: sel("tier", "low")}, dev, true},
		{"clusterGroupSelector needs membership", Criteria{ClusterGroupSelector: sel("tier", "low")}, prod, false},
		{"criteria are ANDed: name and selector", Criteria{ClusterName: "c-dev", ClusterSelector: sel("env", "prod")}, dev, false},
		{"criteria are ANDed: group and selector", Criteria{ClusterGroup: "devs", ClusterSelector: sel("env", "dev")}, dev, true},
		{"group name and group selector must hold for one group", Criteria{ClusterGroup: "devs", ClusterGroupSelector: sel("tier", "high")}, dev, false},
		{"invalid selector matches nothing", Criteria{ClusterSelector: bad}, dev, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Matches(tt.c, tt.cluster, groups); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	if err := (Criteria{ClusterSelector: bad}).Validate(); err == nil {
		t.Error("Validate accepted an invalid selector")
	}
}
