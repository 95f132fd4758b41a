package agent

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/apply"
)

func bdWith(spec, applied string, ready, nonModified bool, deployed *metav1.Condition) *fleetv1.BundleDeployment {
	bd := &fleetv1.BundleDeployment{}
	bd.Spec.DeploymentID = spec
	bd.Status.AppliedDeploymentID = applied
	bd.Status.Ready = ready
	bd.Status.NonModified = nonModified
	if deployed != nil {
		bd.Status.Conditions = []metav1.Condition{*deployed}
	}
	return bd
}

func TestState(t *testing.T) {
	failed := &metav1.Condition{Type: fleetv1.DeployedCondition, Status: metav1.ConditionFalse, Reason: fleetv1.FailedReason}
	waiting := &metav1.Condition{Type: fleetv1.DeployedCondition, Status: metav1.ConditionFalse, Reason: fleetv1.DependencyNotReadyReason}
	staged := bdWith("a", "a", true, true, nil)
	staged.Spec.StagedDeploymentID = "b"
	tests := []struct {
		name string
		bd   *fleetv1.BundleDeployment
		want fleetv1.BundleState
	}{
		{"applied, ready, unmodified", bdWith("a", "a", true, true, nil), fleetv1.Ready},
		{"not applied yet", bdWith("b", "a", true, true, nil), fleetv1.WaitApplied},
		{"apply failed", bdWith("b", "a", true, true, failed), fleetv1.ErrApplied},
		{"waiting for a dependency is not an error", bdWith("b", "", false, false, waiting), fleetv1.WaitApplied},
		{"not ready wins over modified", bdWith("a", "a", false, false, nil), fleetv1.NotReady},
		{"staged change held back", staged, fleetv1.OutOfSync},
		{"modified", bdWith("a", "a", true, false, nil), fleetv1.Modified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := State(tt.bd); got != tt.want {
				t.Errorf("State = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnmetDependency(t *testing.T) {
	ready := *bdWith("a", "a", true, true, nil)
	ready.Labels = map[string]string{fleetv1.BundleNameLabel: "db"}
	notReady := *bdWith("a", "a", false, true, nil)
	notReady.Labels = map[string]string{fleetv1.BundleNameLabel: "db"}
	tests := []struct {
		name    string
		dep     fleetv1.BundleRef
		matched []fleetv1.BundleDeployment
		want    string
	}{
		{"ready dependency", fleetv1.BundleRef{Name: "db"}, []fleetv1.BundleDeployment{ready}, ""},
		{"missing named dependency", fleetv1.BundleRef{Name: "db"}, nil, "bundle db has no deployment on this cluster yet"},
		{"not ready dependency", fleetv1.BundleRef{Name: "db"}, []fleetv1.BundleDeployment{notReady}, "bundle db is NotReady"},
		{"accepted states widen what counts", fleetv1.BundleRef{Name: "db", AcceptedStates: []fleetv1.BundleState{fleetv1.Ready, fleetv1.NotReady}}, []fleetv1.BundleDeployment{notReady}, ""},
		{"selector matching nothing is satisfied", fleetv1.BundleRef{Selector: &metav1.LabelSelector{}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(unmetDependency(tt.dep, tt.matched), ", "); got != tt.want {
				t.Errorf("unmet = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetMonitoredAndReady(t *testing.T) {
	bd := bdWith("a", "a", false, false, nil)
	setCondition(bd, fleetv1.DeployedCondition, true, fleetv1.SucceededReason, "deployed a")
	r := &apply.Report{}
	for range 12 {
		r.Modified = append(r.Modified, fleetv1.ModifiedStatus{Kind: "ConfigMap", Namespace: "app", Name: "cm", Missing: true})
	}
	setMonitored(bd, r)
	setReady(bd)
	if len(bd.Status.ModifiedStatus) != maxDetails {
		t.Errorf("modifiedStatus has %d entries, want at most %d", len(bd.Status.ModifiedStatus), maxDetails)
	}
	if bd.Status.NonModified || !bd.Status.Ready {
		t.Errorf("ready %v nonModified %v", bd.Status.Ready, bd.Status.NonModified)
	}
	c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.ReadyCondition)
	if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Modified: ConfigMap app/cm missing") {
		t.Errorf("Ready condition = %+v", c)
	}
	if bd.Status.Display.State != string(fleetv1.Modified) || bd.Status.Display.Deployed != "True" || bd.Status.Display.Monitored != "True" {
		t.Errorf("display = %+v", bd.Status.Display)
	}
}
