package bundle

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefleet/edgefleet/internal/metrics"
)

var (
	pairRecomputes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefleet_bundle_pair_recomputes_total",
		Help: "(Bundle, Cluster) pairs whose target and options were recomputed, by what triggered it (bundle or cluster).",
	}, []string{"trigger"})
	bdWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefleet_bundledeployment_writes_total",
		Help: "BundleDeployment writes by the bundle controller, by operation (create, update, delete).",
	}, []string{"op"})
)

func init() {
	metrics.Registry.MustRegister(pairRecomputes, bdWrites)
}
