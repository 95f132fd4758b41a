package bmc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefleet/edgefleet/internal/metrics"
)

var (
	polls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefleet_bmc_requests_total",
		Help: "BMC polls by result: ok, or the failure kind (Unreachable, BadCertificate, AuthenticationFailed, SystemNotFound, Refused).",
	}, []string{"result"})
	actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefleet_bmc_actions_total",
		Help: "Actions sent to BMCs (PowerOn, GracefulShutdown, ForceOff, EjectMedia, InsertMedia, SetBootOnce) by result (ok, failed).",
	}, []string{"action", "result"})
	pollSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "edgefleet_bmc_poll_duration_seconds",
		Help:    "Time to poll one BMC (login when needed, read the system), actions excluded.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
)

func init() {
	metrics.Registry.MustRegister(polls, actions, pollSeconds)
}
