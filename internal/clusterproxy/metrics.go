package clusterproxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefleet/edgefleet/internal/metrics"
)

// tunnelSessions is what operators watch after a restart or an outage:
// back at the number of connected clusters means every agent reconnected,
// above it for long means sessions leak.
var tunnelSessions = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "edgefleet_tunnel_sessions",
	Help: "Agent tunnel sessions open on this replica.",
})

func init() {
	metrics.Registry.MustRegister(tunnelSessions)
}
