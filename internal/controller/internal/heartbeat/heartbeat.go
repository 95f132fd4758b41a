// Package heartbeat keeps node agents' heartbeats from waking controllers.
package heartbeat

import (
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// Ignore drops MachineInventory updates that only refresh status.lastSeen
// (node agents' heartbeats, one per machine per minute): with thousands of
// machines they would otherwise wake the inventory and formation
// controllers dozens of times a second for nothing. Formation's
// silent-agent check reads lastSeen when its own timer runs out.
var Ignore = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	a, okA := e.ObjectOld.(*machinesv1.MachineInventory)
	b, okB := e.ObjectNew.(*machinesv1.MachineInventory)
	if !okA || !okB || a.Status.LastSeen.Equal(&b.Status.LastSeen) {
		return true
	}
	if !equality.Semantic.DeepEqual(a.ObjectMeta.Labels, b.ObjectMeta.Labels) || !equality.Semantic.DeepEqual(a.ObjectMeta.Annotations, b.ObjectMeta.Annotations) ||
		a.Generation != b.Generation || !a.DeletionTimestamp.Equal(b.DeletionTimestamp) || !equality.Semantic.DeepEqual(a.Spec, b.Spec) {
		return true
	}
	sa, sb := a.Status.DeepCopy(), b.Status.DeepCopy()
	sa.LastSeen = sb.LastSeen
	return !equality.Semantic.DeepEqual(sa, sb)
}}
