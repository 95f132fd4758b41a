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

// heartbeat is a kubelet's last Lease renewal and when this manager first
// saw it.
type heartbeat struct {
	renew, seen time.Time
	duration    time.Duration
}

// observeHeartbeats records, per node, when its heartbeat last changed as
// this manager's clock sees it.
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
		hb := heartbeat{renew: n.Heartbeat, seen: now, duration: n.LeaseDuration}
		if p, ok := prev[name]; ok && p.renew.Equal(n.Heartbeat) {
			hb.seen = p.seen
		}
		next[name] = hb
	}
	r.heartbeats.Store(key, next)
}

// heartbeatKnown: node's kubelet heartbeat has been read.
func (f *formation) heartbeatKnown(node string) bool {
	if f.fleetCluster == nil {
		return false
	}
	v, ok := f.r.heartbeats.Load(client.ObjectKeyFromObject(f.fleetCluster))
	if !ok {
		return false
	}
	_, ok = v.(map[string]heartbeat)[node]
	return ok
}

// heartbeatStale: node's kubelet has not renewed its Lease for longer than
// half the Lease's duration plus one node read, as this manager saw it
// (false when unknown). The nodes of a site that went dark stop renewing
// at once, while the node lifecycle controller marks them Unknown up to a
// renewal interval (10s) plus its monitor period apart.
func (f *formation) heartbeatStale(node string) (time.Duration, bool) {
	if f.fleetCluster == nil {
		return 0, false
	}
	v, ok := f.r.heartbeats.Load(client.ObjectKeyFromObject(f.fleetCluster))
	if !ok {
		return 0, false
	}
	hb, ok := v.(map[string]heartbeat)[node]
	if !ok {
		return 0, false
	}
	d := hb.duration
	if d <= 0 {
		d = 40 * time.Second // the kubelet's default
	}
	age := f.now.Sub(hb.seen)
	return age, age > d/2+f.r.NodeReadInterval
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
