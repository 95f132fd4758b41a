// Package metrics holds edgefleet's Prometheus registry: controller-runtime's
// (reconcile, workqueue, client, process and Go runtime metrics) plus build
// information. The manager serves it at /metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/edgefleet/edgefleet/internal/version"
)

// Registry is where every edgefleet metric is registered.
var Registry = ctrlmetrics.Registry

func init() {
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "edgefleet_build_info",
		Help:        "Build information of the running edgefleet binary; always 1.",
		ConstLabels: prometheus.Labels{"version": version.Version, "commit": version.Commit},
	})
	buildInfo.Set(1)
	Registry.MustRegister(buildInfo)
}
