package machineinventory

import (
	"testing"

	"github.com/edgefleet/edgefleet/internal/metrics"
	"k8s.io/apimachinery/pkg/types"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

func TestPlanStateGauge(t *testing.T) {
	c := &stateCounter{states: map[types.NamespacedName]machinesv1.PlanState{}}
	a, b := types.NamespacedName{Namespace: "n", Name: "a"}, types.NamespacedName{Namespace: "n", Name: "b"}
	failures := value("edgefleet_machineinventory_plan_failures_total", "")
	gauge := func(s machinesv1.PlanState) float64 { return value("edgefleet_machineinventory_plans", string(s)) }
	base := map[machinesv1.PlanState]float64{}
	for _, s := range []machinesv1.PlanState{machinesv1.PlanPending, machinesv1.PlanApplied, machinesv1.PlanFailed} {
		base[s] = gauge(s)
	}
	for _, step := range []struct {
		key   types.NamespacedName
		state machinesv1.PlanState
		// wanted gauge deltas and new failures after the step
		pending, applied, failed, newFailures float64
	}{
		{a, machinesv1.PlanPending, 1, 0, 0, 0},
		{b, machinesv1.PlanPending, 2, 0, 0, 0},
		{a, machinesv1.PlanApplied, 1, 1, 0, 0},
		{b, machinesv1.PlanFailed, 0, 1, 1, 1},
		{b, machinesv1.PlanFailed, 0, 1, 1, 1}, // the same state again is no new failure
		{b, machinesv1.PlanApplied, 0, 2, 0, 1},
	} {
		c.set(step.key, step.state)
		if gauge(machinesv1.PlanPending)-base[machinesv1.PlanPending] != step.pending || gauge(machinesv1.PlanApplied)-base[machinesv1.PlanApplied] != step.applied ||
			gauge(machinesv1.PlanFailed)-base[machinesv1.PlanFailed] != step.failed || value("edgefleet_machineinventory_plan_failures_total", "")-failures != step.newFailures {
			t.Fatalf("after %v=%s: pending %v applied %v failed %v failures %v", step.key, step.state,
				gauge(machinesv1.PlanPending), gauge(machinesv1.PlanApplied), gauge(machinesv1.PlanFailed), value("edgefleet_machineinventory_plan_failures_total", ""))
		}
	}
	c.forget(a)
	c.forget(b)
	if gauge(machinesv1.PlanApplied) != base[machinesv1.PlanApplied] {
		t.Fatal("deleted inventories still counted")
	}
}

// value reads a metric through the registry, as a scrape does.
func value(name, state string) float64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if state == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}
