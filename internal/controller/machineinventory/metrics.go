package machineinventory

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/metrics"
)

var (
	planStates = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "edgefleet_machineinventory_plans",
		Help: "MachineInventories by the state of their current plan (Pending, Applied, Failed; empty before the machine registered).",
	}, []string{"state"})
	planFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_machineinventory_plan_failures_total",
		Help: "Times a machine's current plan turned Failed (a failed instruction, or an invalid plan).",
	})
)

func init() {
	metrics.Registry.MustRegister(planStates, planFailures)
}

// stateCounter keeps the plan state of every inventory it saw, so the
// gauge is a count by state without listing inventories.
type stateCounter struct {
	mu     sync.Mutex
	states map[types.NamespacedName]machinesv1.PlanState
}

var planStateOf = &stateCounter{states: map[types.NamespacedName]machinesv1.PlanState{}}

// set records key's state; forget removes a deleted inventory.
func (c *stateCounter) set(key types.NamespacedName, s machinesv1.PlanState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, known := c.states[key]
	if known && old == s {
		return
	}
	if known {
		planStates.WithLabelValues(string(old)).Dec()
	}
	if s == machinesv1.PlanFailed && old != machinesv1.PlanFailed {
		planFailures.Inc()
	}
	c.states[key] = s
	planStates.WithLabelValues(string(s)).Inc()
}

func (c *stateCounter) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, known := c.states[key]; known {
		planStates.WithLabelValues(string(old)).Dec()
		delete(c.states, key)
	}
}
