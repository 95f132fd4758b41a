package clusterns

import "time"

// Defaults of the liveness settings (server flags --tunnel-probe-interval
// and --cluster-offline-threshold), shared by the tunnel's prober and the
// cluster controller that judges liveness.
const (
	DefaultProbeInterval    = 10 * time.Second
	DefaultOfflineThreshold = 90 * time.Second
)

// TunnelLease is the Lease, in each cluster's namespace, that the replica
// holding the cluster's tunnel renews after each successful probe
// (internal/clusterproxy): holderIdentity is that replica, renewTime the
// last good probe. The cluster controller (liveness), registration
// (has an agent ever checked in) and the replicas forwarding proxy requests
// read it; the tunnel sessions themselves stay in the replica that holds them.
const TunnelLease = "edgefleet-tunnel"

// TunnelLeaseRenewEvery limits tunnel Lease writes to one per cluster per
// period: the probe interval, but no more often than a sixth of the offline
// threshold (15 s by default).
func TunnelLeaseRenewEvery(probeInterval, offlineThreshold time.Duration) time.Duration {
	return max(probeInterval, offlineThreshold/6)
}

// TunnelStale is how old a tunnel probe may be for the tunnel to count as up.
func TunnelStale(probeInterval, offlineThreshold time.Duration) time.Duration {
	return 3 * TunnelLeaseRenewEvery(probeInterval, offlineThreshold)
}
