package clusterproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	clusterctrl "github.com/edgefleet/edgefleet/internal/controller/cluster"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// TunnelLease is the Lease, in each cluster's namespace, that the replica
// holding the cluster's tunnel renews after each successful probe:
// holderIdentity is that replica, renewTime the last good probe. It is how
// the leader and the replicas forwarding proxy requests (forward.go) know where the
// session is and that it works.
const TunnelLease = "edgefleet-tunnel"

// TunnelDisconnectedReason: the agent heartbeats but its tunnel is down, so
// the kube-api proxy cannot reach the cluster.
const TunnelDisconnectedReason = "TunnelDisconnected"

// leaseRenewEvery limits Lease writes to one per cluster per period: the
// probe interval, but no more often than a sixth of the offline threshold
// (15 s by default).
func (o *Options) leaseRenewEvery() time.Duration { return max(o.ProbeInterval, o.OfflineThreshold/6) }

// probeLoop probes every session on this replica each ProbeInterval.
func (s *Server) probeLoop(ctx context.Context) error {
	t := time.NewTicker(s.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		batch := make(map[types.NamespacedName]*entry, len(s.sessions))
		for k, e := range s.sessions {
			batch[k] = e
		}
		s.mu.Unlock()
		for k, e := range batch {
			go s.probe(ctx, k, e)
		}
	}
}

// probe sends GET /version through the tunnel to the downstream API server
// and, on success, renews the cluster's tunnel Lease.
func (s *Server) probe(ctx context.Context, key types.NamespacedName, e *entry) {
	log := s.opts.Log.WithValues("Cluster", key.String())
	if why := s.revoked(ctx, key, e); why != "" {
		log.Info("Closing the tunnel of a revoked credential", "reason", why)
		_ = e.sess.Close()
		return
	}
	if err := s.probeOnce(ctx, e, max(s.opts.ProbeInterval, 5*time.Second)); err != nil {
		log.V(1).Info("Tunnel probe failed", "error", err.Error())
		return
	}
	now := time.Now()
	s.mu.Lock()
	due := now.Sub(e.renewed) >= s.opts.leaseRenewEvery()
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.renewLease(ctx, key, now); err != nil {
		log.Error(err, "Renewing tunnel lease failed")
		return
	}
	s.mu.Lock()
	e.renewed = now
	s.mu.Unlock()
}

// probeOnce sends GET /version through the session.
func (s *Server) probeOnce(ctx context.Context, e *entry, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+clusterjoin.TunnelAPIServerHost+"/version", nil)
	resp, err := e.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /version: %s", resp.Status)
	}
	return nil
}

// revoked says why a session must close ("" if not): its Cluster is gone,
// or its credential generation was revoked since it connected.
func (s *Server) revoked(ctx context.Context, key types.NamespacedName, e *entry) string {
	var cluster fleetv1.Cluster
	err := s.cache.Get(ctx, key, &cluster)
	switch {
	case apierrors.IsNotFound(err):
		return "the Cluster was deleted"
	case err != nil:
		return ""
	case !cluster.DeletionTimestamp.IsZero():
		return "the Cluster is being deleted"
	case clusterregistration.CredentialGeneration(&cluster) != e.generation:
		return "the cluster's credentials were revoked"
	}
	return ""
}

func (s *Server) renewLease(ctx context.Context, key types.NamespacedName, now time.Time) error {
	// Derived, never read from status: see clusterctrl.Namespace.
	ns := clusterctrl.NamespaceName(key.Namespace, key.Name)
	t := metav1.NewMicroTime(now)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: TunnelLease}}
	err := s.client.Get(ctx, client.ObjectKeyFromObject(lease), lease)
	if apierrors.IsNotFound(err) {
		lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &s.opts.Identity, RenewTime: &t, AcquireTime: &t}
		return s.client.Create(ctx, lease)
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = &s.opts.Identity
	lease.Spec.RenewTime = &t
	return s.client.Update(ctx, lease)
}

// liveness sets every Cluster's Connected condition from its heartbeat and
// tunnel Lease. It runs on the leader.
type liveness struct {
	server *Server
}

func (l *liveness) Start(ctx context.Context) error {
	interval := min(l.server.opts.ProbeInterval, l.server.opts.OfflineThreshold/3)
	t := time.NewTicker(max(interval, 200*time.Millisecond))
	defer t.Stop()
	for {
		if err := l.sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			l.server.opts.Log.Error(err, "Updating cluster liveness failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (l *liveness) sweep(ctx context.Context, now time.Time) error {
	s := l.server
	var clusters fleetv1.ClusterList
	if err := s.cache.List(ctx, &clusters); err != nil {
		return fmt.Errorf("listing clusters: %w", err)
	}
	for i := range clusters.Items {
		c := &clusters.Items[i]
		ns, ready := clusterctrl.Namespace(c)
		if !c.DeletionTimestamp.IsZero() || !ready {
			continue
		}
		var lease coordinationv1.Lease
		var probed time.Time
		if err := s.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: TunnelLease}, &lease); err == nil && lease.Spec.RenewTime != nil {
			probed = lease.Spec.RenewTime.Time
		}
		agent := c.Status.Agent
		var hb coordinationv1.Lease
		if err := s.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: clusterjoin.HeartbeatLease}, &hb); err == nil {
			agent = AgentStatusFrom(&hb, c.Status.Agent, now)
		}
		cond := Connected(agent.LastSeen.Time, probed, now, s.opts.OfflineThreshold, s.opts.tunnelStale())
		cond.ObservedGeneration = c.Generation
		old := meta.FindStatusCondition(c.Status.Conditions, fleetv1.ConnectedCondition)
		condChanged := old == nil || old.Status != cond.Status || old.Reason != cond.Reason
		agentChanged := agentFactsChanged(c.Status.Agent, agent, s.opts.OfflineThreshold/3)
		if !condChanged && !agentChanged {
			continue
		}
		updated := c.DeepCopy()
		updated.Status.Agent = agent
		meta.SetStatusCondition(&updated.Status.Conditions, cond)
		if condChanged {
			ctrl.LoggerFrom(ctx).Info("Cluster connection changed", "Cluster", c.Namespace+"/"+c.Name, "connected", cond.Status, "reason", cond.Reason)
		}
		if err := s.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(c, client.MergeFromWithOptimisticLock{})); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("patching Connected of cluster %s/%s: %w", c.Namespace, c.Name, err)
		}
	}
	return nil
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
	return out
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
	if old.Version != cur.Version || old.KubernetesVersion != cur.KubernetesVersion {
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
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, TunnelDisconnectedReason, "The agent checks in but its tunnel is down: deployments continue, the kube-api proxy cannot reach the cluster"
	}
	return c
}
