package gitrepo

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
)

// setWarningsCondition reports the fleet.yaml keys ignored at the current
// commit; the condition is absent when there are none.
func setWarningsCondition(s *fleetv1.GitRepoStatus, generation int64, ws []bundlereader.Warning) {
	if len(ws) == 0 {
		meta.RemoveStatusCondition(&s.Conditions, fleetv1.FleetYAMLWarningsCondition)
		return
	}
	msg := fmt.Sprintf("%d fleet.yaml key(s) ignored (set annotation %s: \"true\" to fail instead): ", len(ws), fleetv1.StrictFleetYAMLAnnotation)
	for i, w := range ws {
		line := w.String()
		if len(msg)+len(line) > 1024 {
			msg += fmt.Sprintf("… and %d more (see the Bundles' %s annotation)", len(ws)-i, fleetv1.FleetYAMLWarningsAnnotation)
			break
		}
		if i > 0 {
			msg += "; "
		}
		msg += line
	}
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: fleetv1.FleetYAMLWarningsCondition, Status: metav1.ConditionTrue, Reason: fleetv1.IgnoredKeysReason, Message: msg, ObservedGeneration: generation})
}
