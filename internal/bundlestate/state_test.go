package bundlestate

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func bd(deployed, staged, applied string, ready, nonModified bool, conds ...metav1.Condition) *fleetv1.BundleDeployment {
	return &fleetv1.BundleDeployment{
		Spec:   fleetv1.BundleDeploymentSpec{DeploymentID: deployed, StagedDeploymentID: staged},
		Status: fleetv1.BundleDeploymentStatus{AppliedDeploymentID: applied, Ready: ready, NonModified: nonModified, Conditions: conds},
	}
}

func TestState(t *testing.T) {
	deployFailed := metav1.Condition{Type: fleetv1.DeployedCondition, Status: metav1.ConditionFalse, Reason: fleetv1.DeployFailedReason, Message: "boom"}
	tests := []struct {
		name string
		bd   *fleetv1.BundleDeployment
		want fleetv1.BundleState
	}{
		{"no deployment yet", nil, fleetv1.Pending},
		{"applied differs and Deployed False", bd("a", "a", "", false, false, deployFailed), fleetv1.ErrApplied},
		{"applied differs", bd("a", "a", "", false, false), fleetv1.WaitApplied},
		{"not ready beats out of sync", bd("a", "b", "a", false, true), fleetv1.NotReady},
		{"staged differs", bd("a", "b", "a", true, true), fleetv1.OutOfSync},
		{"out of sync beats modified", bd("a", "b", "a", true, false), fleetv1.OutOfSync},
		{"modified", bd("a", "a", "a", true, false), fleetv1.Modified},
		{"ready", bd("a", "a", "a", true, true), fleetv1.Ready},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := State(tt.bd); got != tt.want {
				t.Errorf("State = %s, want %s", got, tt.want)
			}
		})
	}
	if Message(bd("a", "a", "", false, false, deployFailed)) != "boom" {
		t.Error("ErrApplied message does not carry the Deployed condition's message")
	}
}

func TestRank(t *testing.T) {
	order := []fleetv1.BundleState{fleetv1.Ready, fleetv1.NotReady, fleetv1.Pending, fleetv1.OutOfSync, fleetv1.Modified, fleetv1.WaitApplied, fleetv1.ErrApplied}
	for i := 1; i < len(order); i++ {
		if Rank(order[i]) <= Rank(order[i-1]) {
			t.Errorf("%s does not rank worse than %s", order[i], order[i-1])
		}
		if Worse(order[i-1], order[i]) != order[i] || Worse(order[i], order[i-1]) != order[i] {
			t.Errorf("Worse(%s, %s) is wrong", order[i-1], order[i])
		}
	}
}

func TestSummaryAndReadyMessage(t *testing.T) {
	var s fleetv1.BundleSummary
	Add(&s, "ns/a", fleetv1.Ready, "")
	Add(&s, "ns/b", fleetv1.WaitApplied, "waiting")
	Add(&s, "ns/c", fleetv1.ErrApplied, "boom")
	for i := range 12 {
		Add(&s, "ns/n"+string(rune('a'+i)), fleetv1.NotReady, "")
	}
	if s.DesiredReady != 15 || s.Ready != 1 || s.WaitApplied != 1 || s.ErrApplied != 1 || s.NotReady != 12 {
		t.Errorf("counts = %+v", s)
	}
	if len(s.NonReadyResources) != MaxNonReady {
		t.Errorf("listed %d non-ready, want at most %d", len(s.NonReadyResources), MaxNonReady)
	}
	if WorstState(s) != fleetv1.ErrApplied {
		t.Errorf("WorstState = %s", WorstState(s))
	}
	msg := ReadyMessage(s, "Cluster")
	if !strings.HasPrefix(msg, "ErrApplied(1) [Cluster ns/c: boom]; WaitApplied(1) [Cluster ns/b: waiting]; NotReady(12)") {
		t.Errorf("ReadyMessage = %q", msg)
	}
	var ready fleetv1.BundleSummary
	Add(&ready, "x", fleetv1.Ready, "")
	if ReadyMessage(ready, "Cluster") != "" || WorstState(ready) != fleetv1.Ready {
		t.Error("an all-ready summary has a message or a non-Ready worst state")
	}
}

func TestSummarizeListsWorstFirst(t *testing.T) {
	entries := []Entry{
		{Name: "a", State: fleetv1.Ready},
		{Name: "b", State: fleetv1.NotReady, Message: "waiting"},
		{Name: "c", State: fleetv1.ErrApplied, Message: "rejected"},
		{Name: "d", State: fleetv1.Ready},
	}
	s := Summarize(entries)
	if s.DesiredReady != 4 || s.Ready != 2 || s.NotReady != 1 || s.ErrApplied != 1 {
		t.Fatalf("counts wrong: %+v", s)
	}
	if len(s.NonReadyResources) != 2 || s.NonReadyResources[0].Name != "c" || s.NonReadyResources[1].Name != "b" {
		t.Fatalf("non-ready entries not worst first: %+v", s.NonReadyResources)
	}
	if entries[0].Name != "a" {
		t.Fatal("input reordered")
	}
}
