package heartbeat

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// A node agent's heartbeat (lastSeen alone) wakes no controller; anything
// else the inventory says does.
func TestIgnore(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	base := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: "m", Labels: map[string]string{"a": "b"}}}
	base.Status.LastSeen = t0
	for _, tc := range []struct {
		name   string
		change func(*machinesv1.MachineInventory)
		wake   bool
	}{
		{"nothing", func(*machinesv1.MachineInventory) {}, true},
		{"lastSeen only", func(m *machinesv1.MachineInventory) { m.Status.LastSeen = metav1.NewTime(t0.Add(time.Minute)) }, false},
		{"lastSeen and the plan", func(m *machinesv1.MachineInventory) {
			m.Status.LastSeen = metav1.NewTime(t0.Add(time.Minute))
			m.Status.Plan.AppliedChecksum = "x"
		}, true},
		{"lastSeen and a label", func(m *machinesv1.MachineInventory) {
			m.Status.LastSeen = metav1.NewTime(t0.Add(time.Minute))
			m.Labels["a"] = "c"
		}, true},
		{"first contact", func(m *machinesv1.MachineInventory) {
			m.Status.LastSeen = metav1.NewTime(t0.Add(time.Minute))
			m.Status.Network.PrimaryAddress = "10.0.0.1"
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tc.change(cur)
			if got := Ignore.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: cur}); got != tc.wake {
				t.Errorf("wakes the controllers = %v, want %v", got, tc.wake)
			}
		})
	}
}
