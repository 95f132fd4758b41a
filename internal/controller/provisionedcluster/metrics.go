package provisionedcluster

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefleet/edgefleet/internal/metrics"
)

var (
	adoptions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_adoptions_total",
		Help: "MachineInventories adopted by provisioned clusters (claim and ClusterMachine both written).",
	})
	claimConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_claim_conflicts_total",
		Help: "Claims of a MachineInventory lost to a concurrent writer (another cluster or manager); the loser reads again.",
	})
	releases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_releases_total",
		Help: "Machines released by scale-down, a removed pool or a deleted cluster (reset or plan cleared).",
	})
	machinesLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_machines_lost_total",
		Help: "Adopted machines whose MachineInventory disappeared.",
	})
	planWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_plan_writes_total",
		Help: "Writes of a machine's plan Secret by formation (bootstrap, upgrade, release).",
	})
	remediations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_remediations_total",
		Help: "Health remediation outcomes by strategy (powercycle, replace, none) and result (healed, not-healed, failed, replaced).",
	}, []string{"strategy", "result"})
	shortCircuits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_remediation_short_circuits_total",
		Help: "Times remediation was stopped for a cluster, by reason (TooManyUnhealthy, ClusterUnreachable, ControlPlaneProtected, InvalidSpec).",
	}, []string{"reason"})
	upgradesStarted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefleet_provisioning_machine_upgrades_total",
		Help: "Machines moved to a new Kubernetes version by a rolling upgrade.",
	})
)

func init() {
	metrics.Registry.MustRegister(adoptions, claimConflicts, releases, machinesLost, planWrites, upgradesStarted, remediations, shortCircuits)
}
