package targeting

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// bd is a BundleDeployment with the fields the rollout reads.
func bd(deployed, staged, applied string, ready, nonModified bool) *fleetv1.BundleDeployment {
	return &fleetv1.BundleDeployment{
		Spec:   fleetv1.BundleDeploymentSpec{DeploymentID: deployed, StagedDeploymentID: staged},
		Status: fleetv1.BundleDeploymentStatus{AppliedDeploymentID: applied, Ready: ready, NonModified: nonModified},
	}
}

// readyOn returns a target whose cluster runs oldID, Ready, with newID to roll out.
func readyOn(name, oldID, newID string, labels map[string]string) *RolloutTarget {
	return &RolloutTarget{
		Cluster:      cluster(name, labels),
		DeploymentID: newID,
		Deployment:   bd(oldID, oldID, oldID, true, true),
	}
}

func promoted(ts []*RolloutTarget, id string) []string {
	var out []string
	for _, t := range ts {
		if t.Deployment.Spec.DeploymentID == id {
			out = append(out, t.Cluster.Name)
		}
	}
	return out
}

func TestRollout(t *testing.T) {
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	tests := []struct {
		name    string
		rs      *fleetv1.RolloutStrategy
		targets func() []*RolloutTarget
		want    []string
	}{
		{
			name: "default strategy promotes everything",
			targets: func() []*RolloutTarget {
				return []*RolloutTarget{readyOn("a", "old", "new", nil), readyOn("b", "old", "new", nil), readyOn("c", "old", "new", nil)}
			},
			want: []string{"a", "b", "c"},
		},
		{
			name: "maxUnavailable 1 promotes one available cluster",
			rs:   &fleetv1.RolloutStrategy{MaxUnavailable: &one},
			targets: func() []*RolloutTarget {
				return []*RolloutTarget{readyOn("a", "old", "new", nil), readyOn("b", "old", "new", nil), readyOn("c", "old", "new", nil)}
			},
			want: []string{"a"},
		},
		{
			name: "an already unavailable cluster is promoted and uses up the budget",
			rs:   &fleetv1.RolloutStrategy{MaxUnavailable: &one},
			targets: func() []*RolloutTarget {
				ts := []*RolloutTarget{readyOn("a", "old", "new", nil), readyOn("b", "old", "new", nil), readyOn("c", "old", "new", nil)}
				ts[1].Deployment.Status.Ready = false
				return ts
			},
			want: []string{"b"},
		},
		{
			name: "offline clusters do not count against the budget",
			rs:   &fleetv1.RolloutStrategy{MaxUnavailable: &one},
			targets: func() []*RolloutTarget {
				ts := []*RolloutTarget{readyOn("a", "old", "new", nil), readyOn("b", "old", "new", nil), readyOn("c", "old", "new", nil)}
				ts[0].Offline = true
				ts[0].Deployment.Status.Ready = false
				return ts
			},
			want: []string{"a", "b"},
		},
		{
			name: "paused targets stay staged",
			targets: func() []*RolloutTarget {
				ts := []*RolloutTarget{readyOn("a", "old", "new", nil), readyOn("b", "old", "new", nil)}
				ts[1].Paused = true
				return ts
			},
			want: []string{"a"},
		},
		{
			name: "new deployments are promoted even with no budget",
			rs:   &fleetv1.RolloutStrategy{MaxUnavailable: &zero},
			targets: func() []*RolloutTarget {
				return []*RolloutTarget{{Cluster: cluster("a", nil), DeploymentID: "new", Deployment: &fleetv1.BundleDeployment{}}, readyOn("b", "old", "new", nil)}
			},
			want: []string{"a"},
		},
		{
			name: "partitions stop after the first unavailable one",
			rs: &fleetv1.RolloutStrategy{Partitions: []fleetv1.Partition{
				{Name: "canary", ClusterSelector: sel("ring", "0"), MaxUnavailable: &one},
				{Name: "rest", ClusterSelector: &metav1.LabelSelector{}},
			}},
			targets: func() []*RolloutTarget {
				return []*RolloutTarget{
					readyOn("a", "old", "new", map[string]string{"ring": "0"}),
					readyOn("b", "old", "new", map[string]string{"ring": "0"}),
					readyOn("c", "old", "new", map[string]string{"ring": "1"}),
					readyOn("d", "old", "new", map[string]string{"ring": "1"}),
				}
			},
			want: []string{"a"},
		},
		{
			name: "partitions continue once the earlier one is up to date",
			rs: &fleetv1.RolloutStrategy{Partitions: []fleetv1.Partition{
				{Name: "canary", ClusterSelector: sel("ring", "0")},
				{Name: "rest", ClusterSelector: &metav1.LabelSelector{}},
			}},
			targets: func() []*RolloutTarget {
				return []*RolloutTarget{
					readyOn("a", "new", "new", map[string]string{"ring": "0"}),
					readyOn("b", "old", "new", map[string]string{"ring": "1"}),
					readyOn("c", "old", "new", map[string]string{"ring": "1"}),
				}
			},
			want: []string{"a", "b", "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := tt.targets()
			if _, err := Rollout(tt.rs, ts); err != nil {
				t.Fatal(err)
			}
			got := promoted(ts, "new")
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("promoted %v, want %v", got, tt.want)
			}
			for _, tg := range ts {
				if tg.Deployment.Spec.StagedDeploymentID != "new" {
					t.Errorf("%s not staged", tg.Cluster.Name)
				}
			}
		})
	}
}

func TestRolloutPartitionStatus(t *testing.T) {
	var ts []*RolloutTarget
	for i := range 250 {
		ts = append(ts, readyOn(fmt.Sprintf("c%03d", i), "x", "x", nil))
	}
	st, err := Rollout(nil, ts)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Partitions) != 5 || st.Partitions[0].Count != 62 || st.Partitions[0].Summary.Ready != 62 {
		t.Errorf("auto partitions = %+v", st.Partitions)
	}
	st, _ = Rollout(&fleetv1.RolloutStrategy{Partitions: []fleetv1.Partition{{Name: "one", ClusterName: "c000"}}}, ts)
	if len(st.Partitions) != 2 || st.Partitions[1].Name != UnpartitionedName || st.Partitions[1].Count != 249 {
		t.Errorf("explicit partitions = %+v", st.Partitions)
	}
	bad := intstr.FromString("lots")
	if _, err := Rollout(&fleetv1.RolloutStrategy{MaxUnavailable: &bad}, ts); err == nil {
		t.Error("Rollout accepted maxUnavailable \"lots\"")
	}
}

func TestLimit(t *testing.T) {
	p := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	i := func(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
	tests := []struct {
		count int
		vals  []*intstr.IntOrString
		want  int
		err   bool
	}{
		{10, nil, 10, false},
		{10, []*intstr.IntOrString{p("25%")}, 2, false},
		{3, []*intstr.IntOrString{p("10%")}, 1, false},
		{10, []*intstr.IntOrString{i(3)}, 3, false},
		{10, []*intstr.IntOrString{p("4")}, 4, false},
		{10, []*intstr.IntOrString{nil, i(2)}, 2, false},
		{0, []*intstr.IntOrString{i(5)}, 1, false},
		{10, []*intstr.IntOrString{p("0%")}, 1, false},
		{10, []*intstr.IntOrString{p("abc")}, 0, true},
	}
	for _, tt := range tests {
		got, err := Limit(tt.count, tt.vals...)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Limit(%d, %v) = %d, %v; want %d (error %v)", tt.count, tt.vals, got, err, tt.want, tt.err)
		}
	}
}

func TestUnconstrained(t *testing.T) {
	full := intstr.FromString("100%")
	half := intstr.FromString("50%")
	tests := []struct {
		rs   *fleetv1.RolloutStrategy
		want bool
	}{
		{nil, true},
		{&fleetv1.RolloutStrategy{}, true},
		{&fleetv1.RolloutStrategy{MaxUnavailable: &full}, true},
		{&fleetv1.RolloutStrategy{MaxUnavailable: &half}, false},
		{&fleetv1.RolloutStrategy{Partitions: []fleetv1.Partition{{Name: "p"}}}, false},
	}
	for _, tt := range tests {
		if got := Unconstrained(tt.rs); got != tt.want {
			t.Errorf("Unconstrained(%+v) = %v, want %v", tt.rs, got, tt.want)
		}
	}
}

// TestAutoPartitionThreshold: Fleet's rolloutStrategy.autoPartitionThreshold
// decides from how many targets automatic partitions apply (default 200).
func TestAutoPartitionThreshold(t *testing.T) {
	var ts []*RolloutTarget
	for i := range 8 {
		ts = append(ts, readyOn(fmt.Sprintf("c%d", i), "x", "x", nil))
	}
	for _, tc := range []struct {
		threshold *int32
		want      int
	}{{nil, 1}, {ptrTo[int32](9), 1}, {ptrTo[int32](8), 4}, {ptrTo[int32](0), 4}} {
		st, err := Rollout(&fleetv1.RolloutStrategy{AutoPartitionThreshold: tc.threshold}, ts)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Partitions) != tc.want {
			t.Errorf("threshold %v, 8 targets: %d partitions, want %d", tc.threshold, len(st.Partitions), tc.want)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
