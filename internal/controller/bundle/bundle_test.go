package bundle

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func TestDeploymentName(t *testing.T) {
	if got := DeploymentName("fleet", "app", "fleet"); got != "app" {
		t.Errorf("same namespace: %q, want the bundle name", got)
	}
	a, b := DeploymentName("team-a", "app", "fleet"), DeploymentName("team-b", "app", "fleet")
	if a == b || a != "team-a-app" {
		t.Errorf("bundles of one name from two namespaces: %q and %q", a, b)
	}
	long := DeploymentName(strings.Repeat("n", 63), strings.Repeat("b", 253), "fleet")
	if len(validation.IsDNS1123Subdomain(long)) > 0 {
		t.Errorf("%q is not a valid name", long)
	}
}

func TestLabelValue(t *testing.T) {
	if LabelValue("app") != "app" {
		t.Error("short value changed")
	}
	v := LabelValue(strings.Repeat("x", 100))
	if len(validation.IsValidLabelValue(v)) > 0 || v == LabelValue(strings.Repeat("x", 101)) {
		t.Errorf("long value %q invalid or not distinct", v)
	}
}

func deployment(cluster string, deployed, staged, applied string, ready bool) *fleetv1.BundleDeployment {
	return &fleetv1.BundleDeployment{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{fleetv1.ClusterNamespaceLabel: "fleet", fleetv1.ClusterNameLabel: cluster}},
		Spec:       fleetv1.BundleDeploymentSpec{DeploymentID: deployed, StagedDeploymentID: staged},
		Status:     fleetv1.BundleDeploymentStatus{AppliedDeploymentID: applied, Ready: ready, NonModified: true},
	}
}

func TestComputeStatus(t *testing.T) {
	tests := []struct {
		name        string
		paused      bool
		bds         []*fleetv1.BundleDeployment
		pending     []pendingTarget
		wantDisplay string
		wantState   string
		wantReady   metav1.ConditionStatus
		wantReason  string
		wantRolling bool
		wantMessage string
	}{
		{"no targets", false, nil, nil, "0/0", "", metav1.ConditionTrue, fleetv1.NoTargetsReason, false, ""},
		{"all ready", false, []*fleetv1.BundleDeployment{deployment("a", "x", "x", "x", true)}, nil, "1/1", "Ready", metav1.ConditionTrue, fleetv1.SucceededReason, false, ""},
		{"waiting for agents", false, []*fleetv1.BundleDeployment{deployment("a", "x", "x", "x", true), deployment("b", "x", "x", "", false)}, nil,
			"1/2", "WaitApplied", metav1.ConditionFalse, fleetv1.TargetsNotReadyReason, true, "WaitApplied(1) [Cluster fleet/b: waiting for the agent"},
		{"paused", true, []*fleetv1.BundleDeployment{deployment("a", "x", "y", "x", true)}, nil, "0/1", "OutOfSync", metav1.ConditionFalse, fleetv1.PausedReason, false, "OutOfSync(1)"},
		{"pending cluster", false, nil, []pendingTarget{{"fleet/new", waitingForNamespace}}, "0/1", "Pending", metav1.ConditionFalse, fleetv1.TargetsNotReadyReason, true,
			"Pending(1) [Cluster fleet/new: waiting for the cluster's namespace"},
		{"deferred by maxNew", false, []*fleetv1.BundleDeployment{deployment("a", "x", "x", "x", true)}, []pendingTarget{{"fleet/b", waitingForMaxNew(&fleetv1.RolloutStrategy{MaxNew: ptr(int32(1))})}},
			"1/2", "Pending", metav1.ConditionFalse, fleetv1.TargetsNotReadyReason, true,
			"Pending(1) [Cluster fleet/b: waiting for the rollout budget: rolloutStrategy.maxNew creates at most 1 new BundleDeployments per pass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fleetv1.Bundle{Spec: fleetv1.BundleSpec{Paused: tt.paused}}
			var st fleetv1.BundleStatus
			computeStatus(&st, b, tt.bds, tt.pending)
			if st.Display.ReadyClusters != tt.wantDisplay || st.Display.State != tt.wantState {
				t.Errorf("display %+v", st.Display)
			}
			ready := meta.FindStatusCondition(st.Conditions, fleetv1.ReadyCondition)
			if ready == nil || ready.Status != tt.wantReady || ready.Reason != tt.wantReason || !strings.Contains(ready.Message, tt.wantMessage) {
				t.Errorf("Ready = %+v", ready)
			}
			if meta.IsStatusConditionTrue(st.Conditions, fleetv1.ReconcilingCondition) != tt.wantRolling {
				t.Errorf("Reconciling = %v, want %v", meta.FindStatusCondition(st.Conditions, fleetv1.ReconcilingCondition), tt.wantRolling)
			}
		})
	}
	var st fleetv1.BundleStatus
	setInvalid(&st, &fleetv1.Bundle{}, errString("bad selector"))
	if !meta.IsStatusConditionTrue(st.Conditions, fleetv1.StalledCondition) || meta.IsStatusConditionTrue(st.Conditions, fleetv1.ReadyCondition) {
		t.Errorf("invalid: %+v", st.Conditions)
	}
	computeStatus(&st, &fleetv1.Bundle{}, nil, nil)
	if meta.FindStatusCondition(st.Conditions, fleetv1.StalledCondition) != nil {
		t.Error("Stalled stays after the spec is fixed")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestDeferNew(t *testing.T) {
	old := &fleetv1.BundleDeployment{}
	two := int32(2)
	for _, tc := range []struct {
		rs        *fleetv1.RolloutStrategy
		originals []*fleetv1.BundleDeployment
		want      string
	}{
		{nil, []*fleetv1.BundleDeployment{nil, nil, nil}, "[false false false]"},
		{&fleetv1.RolloutStrategy{}, []*fleetv1.BundleDeployment{nil, nil, nil}, "[false false false]"},
		// Existing deployments are always written; only new ones count.
		{&fleetv1.RolloutStrategy{MaxNew: &two}, []*fleetv1.BundleDeployment{nil, old, nil, old, nil, nil}, "[false false false false true true]"},
	} {
		if got := fmt.Sprint(deferNew(tc.rs, tc.originals)); got != tc.want {
			t.Errorf("deferNew = %s, want %s", got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
