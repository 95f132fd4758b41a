package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// livenessEvery is how often a connected cluster's liveness is recomputed:
// it sets how late an offline cluster is noticed.
func (r *Reconciler) livenessEvery() time.Duration {
	return max(min(r.ProbeInterval, r.OfflineThreshold/3), 200*time.Millisecond)
}

// updateLiveness sets Connected and status.agent from the agent's heartbeat
// Lease and the tunnel Lease in the cluster's namespace. Both are facts the
// cluster controller reads; it is the only writer of the Cluster's status.
func (r *Reconciler) updateLiveness(ctx context.Context, c *fleetv1.Cluster, ns string, st *fleetv1.ClusterStatus, now time.Time) {
	var lease coordinationv1.Lease
	var probed time.Time
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: clusterns.TunnelLease}, &lease); err == nil && lease.Spec.RenewTime != nil {
		probed = lease.Spec.RenewTime.Time
	}
	agent := st.Agent
	var hb coordinationv1.Lease
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: clusterjoin.HeartbeatLease}, &hb); err == nil {
		agent = AgentStatusFrom(&hb, st.Agent, now)
	}
	cond := Connected(agent.LastSeen.Time, probed, now, r.OfflineThreshold, clusterns.TunnelStale(r.ProbeInterval, r.OfflineThreshold))
	cond.ObservedGeneration = c.Generation
	old := meta.FindStatusCondition(st.Conditions, fleetv1.ConnectedCondition)
	condChanged := old == nil || old.Status != cond.Status || old.Reason != cond.Reason
	agentChanged := agentFactsChanged(st.Agent, agent, r.OfflineThreshold/3)
	if !condChanged && !agentChanged {
		return
	}
	st.Agent = agent
	conditions.Set(&st.Conditions, cond.Type, cond.Status, cond.Reason, cond.Message, cond.ObservedGeneration)
	if condChanged {
		logf.FromContext(ctx).Info("Cluster connection changed", "connected", cond.Status, "reason", cond.Reason)
	}
}

// maxAgentFact bounds what an agent's Lease annotations put into the
// Cluster's status.
const maxAgentFact = 64

// AgentStatusFrom is the Cluster's status.agent as the agent's heartbeat
// Lease reports it: lastSeen is the Lease's renewTime (never in the future,
// never older than what status already has), the versions its annotations,
// cut to printable ASCII of bounded length. Everything else an agent may
// write into its Lease is ignored.
func AgentStatusFrom(hb *coordinationv1.Lease, current fleetv1.AgentStatus, now time.Time) fleetv1.AgentStatus {
	out := current
	if hb.Spec.RenewTime != nil {
		seen := hb.Spec.RenewTime.Time
		if seen.After(now) {
			seen = now
		}
		if seen.After(out.LastSeen.Time) {
			out.LastSeen = metav1.NewTime(seen.Truncate(time.Second))
		}
	}
	if v, ok := hb.Annotations[clusterjoin.AnnotationAgentVersion]; ok {
		out.Version = agentFact(v)
	}
	if v, ok := hb.Annotations[clusterjoin.AnnotationKubernetesVersion]; ok {
		out.KubernetesVersion = agentFact(v)
	}
	if v, ok := hb.Annotations[clusterjoin.AnnotationAgentImage]; ok {
		out.Image = agentImage(v)
	}
	return out
}

// maxAgentImage bounds an image reference (registry/repository@sha256:…).
const maxAgentImage = 512

func agentImage(v string) string {
	v = printable(v)
	if len(v) > maxAgentImage {
		v = v[:maxAgentImage]
	}
	return v
}

func printable(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, v)
}

func agentFact(v string) string {
	v = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, v)
	if len(v) > maxAgentFact {
		v = v[:maxAgentFact]
	}
	return v
}

// agentFactsChanged: new versions, the first check-in, or lastSeen older
// than refresh. Copying every heartbeat would cost one Cluster write per
// cluster and beat; Connected is computed from the Lease itself, so a
// lastSeen refreshed a few times per offline threshold is enough.
func agentFactsChanged(old, cur fleetv1.AgentStatus, refresh time.Duration) bool {
	if old.Version != cur.Version || old.KubernetesVersion != cur.KubernetesVersion || old.Image != cur.Image {
		return true
	}
	if old.LastSeen.IsZero() != cur.LastSeen.IsZero() {
		return true
	}
	return cur.LastSeen.Sub(old.LastSeen.Time) >= refresh
}

// Connected computes the Connected condition from the last heartbeat, the
// last successful tunnel probe, and the thresholds.
func Connected(lastSeen, probed, now time.Time, offline, tunnelStale time.Duration) metav1.Condition {
	heard := lastSeen
	if probed.After(heard) {
		heard = probed
	}
	c := metav1.Condition{Type: fleetv1.ConnectedCondition}
	switch {
	case heard.IsZero():
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, fleetv1.WaitingForCheckInReason, "No agent has checked in for this cluster yet"
	case now.Sub(heard) > offline:
		c.Status, c.Reason = metav1.ConditionFalse, fleetv1.AgentOfflineReason
		c.Message = fmt.Sprintf("No heartbeat or tunnel probe since %s (offline after %s)", heard.UTC().Format(time.RFC3339), offline)
	case probed.IsZero():
		// An agent without a tunnel (started with --manager-kubeconfig):
		// the heartbeat is all there is.
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, fleetv1.AgentConnectedReason, "The agent checks in; it has no tunnel, so the kube-api proxy is not available"
	case now.Sub(probed) <= tunnelStale:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, fleetv1.AgentConnectedReason, "The agent's tunnel answers: the manager reaches the cluster's Kubernetes API"
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, fleetv1.TunnelDisconnectedReason, "The agent checks in but its tunnel is down: deployments continue, the kube-api proxy cannot reach the cluster"
	}
	return c
}
