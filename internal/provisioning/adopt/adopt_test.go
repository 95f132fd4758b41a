package adopt

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

func inv(name string, ready bool, l map[string]string) machinesv1.MachineInventory {
	s := metav1.ConditionFalse
	if ready {
		s = metav1.ConditionTrue
	}
	return machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Status: machinesv1.MachineInventoryStatus{Conditions: []metav1.Condition{{Type: machinesv1.ReadyCondition, Status: s}}}}
}

func quarantined(i machinesv1.MachineInventory) machinesv1.MachineInventory {
	i.Annotations = map[string]string{provisioningv1.RemediatedAnnotation: "shop 2026-12-07T00:00:00Z"}
	return i
}

func TestMatch(t *testing.T) {
	shared := map[string]string{"site": "a"}
	claimed := func(cluster, pool string) map[string]string {
		return map[string]string{"site": "a", provisioningv1.ClusterLabel: cluster, provisioningv1.PoolLabel: pool}
	}
	sel := labels.SelectorFromSet(shared)
	for _, tc := range []struct {
		name  string
		pools []Pool
		invs  []machinesv1.MachineInventory
		// want per pool: adopted, available, notReady, taken count, missing
		want [][]any
	}{
		{"pools of one cluster do not compete: the first takes what it needs, the rest stays for the next",
			[]Pool{{"control-plane", 1, sel}, {"w", 2, sel}},
			[]machinesv1.MachineInventory{inv("m-2", true, shared), inv("m-0", true, shared), inv("m-1", true, shared)},
			[][]any{{[]string(nil), []string{"m-0", "m-1", "m-2"}, []string(nil), 0, 0}, {[]string(nil), []string{"m-1", "m-2"}, []string(nil), 1, 0}}},
		{"held, other clusters' and not Ready machines",
			[]Pool{{"w", 3, sel}},
			[]machinesv1.MachineInventory{inv("m-0", true, claimed("me", "w")), inv("m-1", true, claimed("other", "w")), inv("m-2", false, shared), inv("m-3", true, shared)},
			[][]any{{[]string{"m-0"}, []string{"m-3"}, []string{"m-2"}, 1, 1}}},
		{"a machine released by health remediation is quarantined: matched but not adoptable",
			[]Pool{{"w", 1, sel}},
			[]machinesv1.MachineInventory{quarantined(inv("m-0", true, shared)), inv("m-1", true, shared)},
			[][]any{{[]string(nil), []string{"m-1"}, []string{"m-0"}, 0, 0}}},
		{"a selector matching nothing",
			[]Pool{{"gpu", 2, labels.SelectorFromSet(map[string]string{"gpu": "true"})}},
			[]machinesv1.MachineInventory{inv("m-0", true, shared)},
			[][]any{{[]string(nil), []string(nil), []string(nil), 0, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Match("me", tc.pools, tc.invs)
			for i, w := range tc.want {
				m := got[i]
				if !slices.Equal(m.Adopted, w[0].([]string)) || !slices.Equal(m.Available, w[1].([]string)) || !slices.Equal(m.NotReady, w[2].([]string)) ||
					len(m.Taken) != w[3].(int) || m.Missing() != w[4].(int) {
					t.Errorf("pool %s: adopted %v available %v notReady %v taken %v missing %d; want %v", m.Pool.Name, m.Adopted, m.Available, m.NotReady, m.Taken, m.Missing(), w)
				}
			}
		})
	}
}

func TestClaimAge(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	i := inv("m", true, nil)
	if ClaimAge(&i, now) < time.Hour*24*365 {
		t.Fatal("a claim without a time must count as old")
	}
	i.Annotations = map[string]string{provisioningv1.ClaimedAtAnnotation: now.Add(-time.Minute).Format(time.RFC3339)}
	if got := ClaimAge(&i, now); got != time.Minute {
		t.Fatalf("age = %s", got)
	}
}

func TestWouldAdopt(t *testing.T) {
	for _, tc := range []struct {
		name       string
		m          PoolMatch
		take, rest []string
	}{
		{"takes what it still needs", PoolMatch{Pool: Pool{Replicas: 3}, Adopted: []string{"a"}, Available: []string{"b", "c", "d"}}, []string{"b", "c"}, []string{"d"}},
		{"fewer available than needed", PoolMatch{Pool: Pool{Replicas: 3}, Available: []string{"b"}}, []string{"b"}, []string{}},
		{"holds more than it wants", PoolMatch{Pool: Pool{Replicas: 1}, Adopted: []string{"a", "b"}, Available: []string{"c"}}, []string{}, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			take, rest := tc.m.WouldAdopt()
			if !slices.Equal(take, tc.take) || !slices.Equal(rest, tc.rest) {
				t.Errorf("WouldAdopt() = %v, %v; want %v, %v", take, rest, tc.take, tc.rest)
			}
		})
	}
}
