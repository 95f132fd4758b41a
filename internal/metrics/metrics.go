// Package metrics holds edgefleet's Prometheus registry: controller-runtime's
// (reconcile, workqueue and client metrics) plus process, Go runtime and
// build information. The manager serves it at /metrics.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
	for _, c := range []prometheus.Collector{
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := Registry.Register(c); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
			panic(err) // a programming error in static metric definitions
		}
	}
}
