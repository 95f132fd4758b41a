package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Defaults of placement.
const (
	placementEvery = time.Minute
	// placementSettle is how long the agent must have run, and a
	// control-plane node been Ready, before the agent moves there: a
	// server that just came up (or flaps) does not take the agent.
	placementSettle = time.Minute
	// MoveCooldown is how long after a move another Pod of the same
	// ReplicaSet waits before moving again.
	MoveCooldown = 10 * time.Minute
)

// placement moves the agent to a control-plane node when it runs on
// another node and a control-plane node could take it. Its Deployment only
// prefers control-plane nodes, and a preference counts at scheduling time
// alone: an agent scheduled while the servers were not ready yet (a
// cluster coming up, a server rebooting during an agent upgrade) would
// stay on a worker for good, and when that site's workers lose their
// network the whole cluster would read unreachable although its API still
// runs. It deletes its own Pod (the ReplicaSet makes a new one, which the
// scheduler places by the preference) at most once per MoveCooldown per
// ReplicaSet, and never when the Pod's spec does not ask for it (a user
// who removed the preference, or pinned the agent with a nodeSelector or
// required affinity, decides).
type placement struct {
	client         client.Client
	namespace, pod string
	every, settle  time.Duration
	now            func() time.Time
	log            logr.Logger
}

func (p *placement) run(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		target, err := p.check(ctx)
		switch {
		case apierrors.IsForbidden(err):
			// The agent's rights were narrowed: say so once, stop trying.
			p.log.Info("Not moving to a control-plane node: the agent may not read nodes or delete its Pod", "err", err.Error())
			return nil
		case err != nil:
			p.log.V(1).Info("Checking whether to move to a control-plane node failed", "err", err.Error())
		case target != "":
			p.log.Info("Moving to a control-plane node: deleted this agent's Pod so the scheduler places the next one there",
				"Pod", klog.KRef(p.namespace, p.pod), "node", target)
			return nil
		}
	}
}

// check deletes the agent's Pod when it should move, and returns the
// control-plane node that can take it; "" when the agent stays.
func (p *placement) check(ctx context.Context) (string, error) {
	var pod corev1.Pod
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: p.pod}, &pod); err != nil {
		return "", err
	}
	now := p.now()
	if pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" || pod.Status.StartTime == nil ||
		now.Sub(pod.Status.StartTime.Time) < p.settle || !prefersControlPlane(&pod) {
		return "", nil
	}
	var node corev1.Node
	if err := p.client.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, &node); err != nil {
		return "", err
	}
	if _, ok := node.Labels[clusterjoin.ControlPlaneNodeLabel]; ok {
		return "", nil
	}
	rs, err := p.replicaSet(ctx, &pod)
	if err != nil || rs == nil {
		return "", err
	}
	if at, err := time.Parse(time.RFC3339, rs.Annotations[clusterjoin.AnnotationAgentMovedAt]); err == nil && now.Sub(at) < MoveCooldown {
		return "", nil
	}
	var nodes corev1.NodeList
	if err := p.client.List(ctx, &nodes, client.HasLabels{clusterjoin.ControlPlaneNodeLabel}); err != nil {
		return "", err
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if !p.canTake(n, &pod, now) {
			continue
		}
		// The cooldown first: if the deletion then fails, the next Pod
		// waits once more than needed; the other order could loop.
		patch := client.MergeFrom(rs.DeepCopy())
		if rs.Annotations == nil {
			rs.Annotations = map[string]string{}
		}
		rs.Annotations[clusterjoin.AnnotationAgentMovedAt] = now.UTC().Format(time.RFC3339)
		if err := p.client.Patch(ctx, rs, patch); err != nil {
			return "", fmt.Errorf("recording the move on ReplicaSet %s: %w", rs.Name, err)
		}
		uid := pod.UID
		if err := p.client.Delete(ctx, &pod, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
			return "", err
		}
		return n.Name, nil
	}
	return "", nil
}

// replicaSet is the ReplicaSet controlling pod; nil when there is none (an
// agent Pod made by hand is not deleted: nothing would bring it back).
func (p *placement) replicaSet(ctx context.Context, pod *corev1.Pod) (*appsv1.ReplicaSet, error) {
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "ReplicaSet" {
		return nil, nil
	}
	var rs appsv1.ReplicaSet
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: owner.Name}, &rs); err != nil {
		return nil, err
	}
	if rs.UID != owner.UID {
		return nil, nil
	}
	return &rs, nil
}

// canTake tells whether n is a node the scheduler would place pod on
// now: Ready for p.settle, schedulable, every NoSchedule and NoExecute
// taint tolerated, the Pod's nodeSelector matched, and no zero Pod
// capacity reported. How many Pods already run there is not counted: a
// full node sends the next Pod back to a worker, and the cooldown stops
// a second move.
func (p *placement) canTake(n *corev1.Node, pod *corev1.Pod, now time.Time) bool {
	if n.Spec.Unschedulable || !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(n.Labels)) {
		return false
	}
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue && now.Sub(c.LastTransitionTime.Time) >= p.settle
		}
	}
	if !ready {
		return false
	}
	for i := range n.Spec.Taints {
		t := &n.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !tolerated(pod.Spec.Tolerations, t, p.log) {
			return false
		}
	}
	if pods, ok := n.Status.Allocatable[corev1.ResourcePods]; ok && pods.IsZero() {
		return false
	}
	return true
}

func tolerated(tolerations []corev1.Toleration, t *corev1.Taint, log logr.Logger) bool {
	for i := range tolerations {
		if tolerations[i].ToleratesTaint(log, t, false) {
			return true
		}
	}
	return false
}

// prefersControlPlane: the Pod's affinity prefers control-plane nodes and
// requires nothing of nodes (a required term is the user's pin).
func prefersControlPlane(pod *corev1.Pod) bool {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return false
	}
	for _, term := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		for _, e := range term.Preference.MatchExpressions {
			if e.Key == clusterjoin.ControlPlaneNodeLabel && e.Operator == corev1.NodeSelectorOpExists && term.Weight > 0 {
				return true
			}
		}
	}
	return false
}
