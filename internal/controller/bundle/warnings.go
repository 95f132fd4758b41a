package bundle

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// maxWarningsMessage bounds the condition message; the annotation has the
// full list.
const maxWarningsMessage = 1024

// setWarningsCondition reports the fleet.yaml keys the reader ignored
// (annotation FleetYAMLWarningsAnnotation, written with the Bundle) as
// condition FleetYAMLWarnings, absent when there are none.
func setWarningsCondition(st *fleetv1.BundleStatus, b *fleetv1.Bundle) {
	w := strings.TrimSpace(b.Annotations[fleetv1.FleetYAMLWarningsAnnotation])
	if w == "" {
		meta.RemoveStatusCondition(&st.Conditions, fleetv1.FleetYAMLWarningsCondition)
		return
	}
	msg := "fleet.yaml keys ignored: " + strings.ReplaceAll(w, "\n", "; ")
	if len(msg) > maxWarningsMessage {
		msg = msg[:maxWarningsMessage] + "… (see annotation " + fleetv1.FleetYAMLWarningsAnnotation + ")"
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: fleetv1.FleetYAMLWarningsCondition, Status: metav1.ConditionTrue, Reason: fleetv1.IgnoredKeysReason, Message: msg, ObservedGeneration: b.Generation})
}
