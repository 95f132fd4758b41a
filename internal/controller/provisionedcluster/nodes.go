package provisionedcluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
)

// defaultDrainTimeout is rolloutStrategy.drainTimeout's default.
const defaultDrainTimeout = 5 * time.Minute

// connect reaches the formed cluster through its tunnel once its fleet
// Cluster is connected, and reads its nodes (one LIST per cluster per
// NodeReadInterval).
func (f *formation) connect(ctx context.Context) {
	fc := f.fleetCluster
	if f.r.Nodes == nil || fc == nil || !meta.IsStatusConditionTrue(fc.Status.Conditions, fleetv1.ConnectedCondition) {
		return
	}
	key := client.ObjectKeyFromObject(fc)
	cs, err := f.r.Nodes.Clientset(ctx, key)
	if err != nil {
		log.FromContext(ctx).Error(err, "Reaching the formed cluster through its tunnel failed")
		return
	}
	f.downstream = cs
	// NodeReady follows the nodes: look again while nothing else wakes us.
	f.requeueAfter(30 * time.Second)
	if v, ok := f.r.nodeCache.Load(key); ok && f.now.Sub(v.(nodeSnapshot).at) < f.r.NodeReadInterval {
		f.nodes = v.(nodeSnapshot).nodes
		return
	}
	nodes, err := nodeops.Nodes(ctx, cs)
	if err != nil {
		log.FromContext(ctx).Error(err, "Reading the formed cluster's nodes through its tunnel failed; NodeReady follows the kubelet probes alone until it works")
		return
	}
	f.r.nodeCache.Store(key, nodeSnapshot{at: f.now, nodes: nodes})
	f.nodes = nodes
	f.r.observeHeartbeats(key, nodes, f.now)
}

// heartbeat is a kubelet's last Lease renewal (its own clock) and the
// offset to this manager's clock.
type heartbeat struct {
	renew    time.Time
	duration time.Duration
	// offset is the least (seen - renew) observed: clock skew plus the
	// shortest read lag. renew+offset is when the renewal happened on the
	// manager's clock, never later than it did (so a silent kubelet is
	// not found late by the node read interval), and kubelet clocks are
	// not trusted against the manager's.
	offset time.Duration
}

// observeHeartbeats records each node's heartbeat and refines its clock
// offset.
func (r *Reconciler) observeHeartbeats(key client.ObjectKey, nodes map[string]nodeops.NodeState, now time.Time) {
	prev := map[string]heartbeat{}
	if v, ok := r.heartbeats.Load(key); ok {
		prev = v.(map[string]heartbeat)
	}
	next := make(map[string]heartbeat, len(nodes))
	for name, n := range nodes {
		if n.Heartbeat.IsZero() {
			continue
		}
		hb := heartbeat{renew: n.Heartbeat, duration: n.LeaseDuration, offset: now.Sub(n.Heartbeat)}
		if p, ok := prev[name]; ok && !n.Heartbeat.Before(p.renew) && p.offset < hb.offset {
			// (a renewal earlier than the last one: the kubelet's clock
			// went back, start over)
			hb.offset = p.offset
		}
		next[name] = hb
	}
	r.heartbeats.Store(key, next)
}

// heartbeatAge is how long ago node's kubelet last renewed its Lease on
// this manager's clock, and the age from which it counts as silent: three
// quarters of the Lease's duration (two renewals missed; 30s by default).
// The nodes of a site that went dark stop renewing at once, while the
// node lifecycle controller marks them Unknown 50s after each one's own
// last renewal, up to a renewal interval plus its monitor period apart.
func (f *formation) heartbeatAge(node string) (age, silentAfter time.Duration, ok bool) {
	if f.fleetCluster == nil {
		return 0, 0, false
	}
	v, ok := f.r.heartbeats.Load(client.ObjectKeyFromObject(f.fleetCluster))
	if !ok {
		return 0, 0, false
	}
	hb, ok := v.(map[string]heartbeat)[node]
	if !ok {
		return 0, 0, false
	}
	d := hb.duration
	if d <= 0 {
		d = 40 * time.Second // the kubelet's default
	}
	return f.now.Sub(hb.renew.Add(hb.offset)), d * 3 / 4, true
}

// drainStep cordons and drains m's node before it is upgraded or removed,
// across reconciles (the start is kept in an annotation); true once
// drained, the timeout passed, or the cluster is not reachable (nothing to
// drain through).
func (f *formation) drainStep(ctx context.Context, m *machine) (bool, error) {
	if f.downstream == nil || m.inv == nil {
		return true, nil
	}
	started, err := time.Parse(time.RFC3339, m.cm.Annotations[provisioningv1.DrainStartedAnnotation])
	if err != nil {
		started = f.now
		if m.cm.Annotations == nil {
			m.cm.Annotations = map[string]string{}
		}
		m.cm.Annotations[provisioningv1.DrainStartedAnnotation] = f.now.UTC().Format(time.RFC3339)
		if err := f.r.Client.Update(ctx, m.cm); err != nil {
			return false, err
		}
		m.before.Annotations, m.before.ResourceVersion = m.cm.Annotations, m.cm.ResourceVersion
	}
	timeout := defaultDrainTimeout
	if d := f.pc.Spec.RolloutStrategy.DrainTimeout; d != nil && d.Duration > 0 {
		timeout = d.Duration
	}
	res, err := nodeops.Step(ctx, f.downstream, m.inv.Name, started, timeout, f.now)
	f.r.nodeCache.Delete(client.ObjectKeyFromObject(f.fleetCluster))
	if err != nil {
		return false, fmt.Errorf("draining node %s: %w", m.inv.Name, err)
	}
	if res.TimedOut {
		f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.DrainingReason, "Drain",
			"Node %s still runs %s after the drain timeout (%s): going on", m.inv.Name, nodeops.Summary(res.Remaining), timeout)
	}
	if !res.Done {
		m.wait = waitState{provisioningv1.DrainingReason, fmt.Sprintf("draining node %s: waiting for %s", m.inv.Name, nodeops.Summary(res.Remaining))}
		f.wait(provisioningv1.DrainingReason, m.wait.message)
		f.requeueAfter(2 * time.Second)
		return false, nil
	}
	return true, nil
}

// uncordon makes a machine drained for its upgrade schedulable again once
// it runs the cluster's version with its node Ready.
func (f *formation) uncordon(ctx context.Context, m *machine) error {
	if f.downstream == nil || m.cm.Annotations[provisioningv1.DrainStartedAnnotation] == "" ||
		m.cm.Status.Version != f.pc.Spec.Version || !m.nodeReady() {
		return nil
	}
	if err := nodeops.SetUnschedulable(ctx, f.downstream, m.inv.Name, false); err != nil {
		return fmt.Errorf("uncordoning node %s: %w", m.inv.Name, err)
	}
	f.r.nodeCache.Delete(client.ObjectKeyFromObject(f.fleetCluster))
	delete(m.cm.Annotations, provisioningv1.DrainStartedAnnotation)
	return f.r.Client.Update(ctx, m.cm)
}
