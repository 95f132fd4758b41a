package agentupgrade

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefleet/edgefleet/internal/metrics"
)

var (
	clustersByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "edgefleet_agent_upgrade_clusters",
		Help: "Clusters by agent upgrade phase: current (agent bundle on the manager's agent image), upgrading (in the current wave, new agent not checked in yet), pending (not on it yet).",
	}, []string{"phase"})
	rollbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_agent_upgrade_rollbacks_total",
		Help: "Agent upgrades halted and rolled back because a wave's new agents did not check in in time.",
	})
)

func init() {
	metrics.Registry.MustRegister(clustersByPhase, rollbacks)
}

// observe sets the gauge from one planning round's view.
func observe(members []member, target string) {
	var current, upgrading, pending float64
	for _, m := range members {
		switch {
		case !m.HasBundle || m.BundleImage != target:
			pending++
		case !m.Started.IsZero() && m.CheckedIn != target && m.AgentImage != target:
			upgrading++
		default:
			current++
		}
	}
	clustersByPhase.WithLabelValues("current").Set(current)
	clustersByPhase.WithLabelValues("upgrading").Set(upgrading)
	clustersByPhase.WithLabelValues("pending").Set(pending)
}
