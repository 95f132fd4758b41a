package agent

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/apply"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
)

// maxDetails is how many nonReady and modified entries the status keeps, as
// Fleet does.
const maxDetails = 10

// setCondition sets a condition with the controllers' status toolkit (one
// truncation rule for messages) and mirrors Deployed and Monitored in the
// display columns.
func setCondition(bd *fleetv1.BundleDeployment, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	conditions.Set(&bd.Status.Conditions, typ, status, reason, msg, bd.Generation)
	switch typ {
	case fleetv1.DeployedCondition:
		bd.Status.Display.Deployed = string(status)
	case fleetv1.MonitoredCondition:
		bd.Status.Display.Monitored = string(status)
	}
}

// setMonitored copies a monitoring report into bd's status.
func setMonitored(bd *fleetv1.BundleDeployment, r *apply.Report) {
	bd.Status.Ready = r.Ready()
	bd.Status.NonModified = r.NonModified()
	bd.Status.NonReadyStatus = truncate(r.NonReady)
	bd.Status.ModifiedStatus = truncate(r.Modified)
	bd.Status.Resources = r.Resources
	setCondition(bd, fleetv1.MonitoredCondition, true, fleetv1.SucceededReason, fmt.Sprintf("%d resources checked", len(r.Resources)))
}

func truncate[T any](s []T) []T {
	if len(s) > maxDetails {
		return s[:maxDetails]
	}
	return s
}

// setReady sets the Ready condition and display.state from the rest of the
// status.
func setReady(bd *fleetv1.BundleDeployment) {
	state := State(bd)
	bd.Status.Display.State = string(state)
	if state == fleetv1.Ready {
		setCondition(bd, fleetv1.ReadyCondition, true, fleetv1.SucceededReason, "deployed and ready")
		return
	}
	reason := fleetv1.ProgressingReason
	if state == fleetv1.ErrApplied {
		reason = fleetv1.FailedReason
	}
	if c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.DeployedCondition); c != nil && c.Reason == fleetv1.DependencyNotReadyReason {
		reason = fleetv1.DependencyNotReadyReason
	}
	setCondition(bd, fleetv1.ReadyCondition, false, reason, readyMessage(bd, state))
}

// readyMessage explains a state other than Ready.
func readyMessage(bd *fleetv1.BundleDeployment, state fleetv1.BundleState) string {
	var parts []string
	if c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.DeployedCondition); c != nil && c.Status == metav1.ConditionFalse {
		parts = append(parts, c.Message)
	}
	for _, n := range bd.Status.NonReadyStatus {
		msg := fmt.Sprintf("%s %s: %s", n.Kind, objectName(n.Namespace, n.Name), n.Summary.State)
		if n.Summary.Message != "" {
			msg += ": " + n.Summary.Message
		}
		parts = append(parts, msg)
	}
	for _, m := range bd.Status.ModifiedStatus {
		what := "modified"
		switch {
		case m.Missing:
			what = "missing"
		case m.Delete:
			what = "extra (should be deleted)"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", m.Kind, objectName(m.Namespace, m.Name), what))
	}
	if c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.MonitoredCondition); c != nil && c.Status == metav1.ConditionFalse {
		parts = append(parts, "monitoring failed: "+c.Message)
	}
	if len(parts) == 0 {
		return string(state)
	}
	return string(state) + ": " + strings.Join(parts, "; ")
}

func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// State is the BundleState of bd, by the rules the manager uses (Fleet's
// GetDeploymentState): the agent only reports the fields, but shows the
// state in display.state and uses it for dependsOn.
func State(bd *fleetv1.BundleDeployment) fleetv1.BundleState { return bundlestate.State(bd) }
