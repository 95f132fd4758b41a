// Package nodeops is what cluster formation does to a formed cluster's
// nodes, through the cluster's tunnel (the kube-api proxy at
// /k8s/clusters/<namespace>.<name>, docs/tunnel.md): read whether a node is
// Ready, cordon and drain a node before it is upgraded or removed, delete
// the Node of a removed machine.
//
// The manager acts as its ServiceAccount edgefleet-system/edgefleet-formation,
// which may use the proxy; downstream that is user
// edgefleet:sa:edgefleet-system:edgefleet-formation, which the formed
// cluster's import manifest binds to the few rights these operations need
// (DownstreamRBAC). Nothing else in the formed cluster is reachable to it.
package nodeops

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/edgefleet/edgefleet/internal/kube/drain"
)

// NodeState is a node's Ready condition and schedulability.
type NodeState struct {
	Ready         bool
	Message       string
	Unschedulable bool
	// Conditions are the node's conditions (health checks time them from
	// their lastTransitionTime).
	Conditions []corev1.NodeCondition
	// Heartbeat is the kubelet's last renewal of its Lease in
	// kube-node-lease (zero when unknown), and LeaseDuration the Lease's
	// duration: a kubelet that stopped renewing is seen before the node
	// lifecycle controller marks its node Unknown (grace period 50s), and
	// the nodes of a site going dark stop renewing together.
	Heartbeat     time.Time
	LeaseDuration time.Duration
}

// NodeLeaseNamespace holds the kubelets' heartbeat Leases.
const NodeLeaseNamespace = "kube-node-lease"

// Nodes reads every node's state with one LIST.
func Nodes(ctx context.Context, cs kubernetes.Interface) (map[string]NodeState, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	out := make(map[string]NodeState, len(list.Items))
	for _, n := range list.Items {
		st := NodeState{Unschedulable: n.Spec.Unschedulable, Message: "the node has no Ready condition yet", Conditions: n.Status.Conditions}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				st.Ready, st.Message = c.Status == corev1.ConditionTrue, c.Message
			}
		}
		out[n.Name] = st
	}
	// Heartbeats are a hint: a cluster joined before the formation role
	// could list Leases reads nodes without them.
	leases, err := cs.CoordinationV1().Leases(NodeLeaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out, nil
	}
	for _, l := range leases.Items {
		st, ok := out[l.Name]
		if !ok || l.Spec.RenewTime == nil {
			continue
		}
		st.Heartbeat = l.Spec.RenewTime.Time
		if l.Spec.LeaseDurationSeconds != nil {
			st.LeaseDuration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		}
		out[l.Name] = st
	}
	return out, nil
}

// SetUnschedulable cordons (true) or uncordons (false) a node; a missing
// node is not an error (nothing to cordon).
func SetUnschedulable(ctx context.Context, cs kubernetes.Interface, node string, unschedulable bool) error {
	return drain.SetUnschedulable(ctx, cs, node, unschedulable)
}

// formationDrain is what formation moves off a node it upgrades or
// removes: everything but DaemonSet and mirror pods, as the machine is
// going away (kubectl drain --ignore-daemonsets --delete-emptydir-data
// --force).
var formationDrain = drain.Options{IgnoreDaemonSets: true, DeleteEmptyDirData: true, Force: true}

// Evict asks the API to evict every pod on node that a drain moves (not
// DaemonSet pods, mirror pods or pods already finished) and returns the
// pods still on the node that a drain waits for. An eviction a
// PodDisruptionBudget refuses (429) is retried at the next call.
func Evict(ctx context.Context, cs kubernetes.Interface, node string) (remaining []string, err error) {
	res, err := drain.Step(ctx, drain.Clientset(cs), node, formationDrain, time.Now())
	if err != nil {
		return nil, err
	}
	return res.Pods(), nil
}

// DeleteNode removes a released machine's Node.
func DeleteNode(ctx context.Context, cs kubernetes.Interface, node string) error {
	err := cs.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// DrainResult is one step of a drain that spans reconciles.
type DrainResult struct {
	Done bool
	// Remaining pods, when not done.
	Remaining []string
	// TimedOut: the drain timeout passed with pods left; the caller goes
	// on anyway (as kubectl drain --timeout would fail, formation prefers
	// progress and says so).
	TimedOut bool
}

// Step cordons node, evicts what is left and reports whether the node is
// drained, started being when the drain began.
func Step(ctx context.Context, cs kubernetes.Interface, node string, started time.Time, timeout time.Duration, now time.Time) (DrainResult, error) {
	if err := SetUnschedulable(ctx, cs, node, true); err != nil {
		return DrainResult{}, fmt.Errorf("cordoning node %s: %w", node, err)
	}
	remaining, err := Evict(ctx, cs, node)
	if err != nil {
		return DrainResult{}, err
	}
	switch {
	case len(remaining) == 0:
		return DrainResult{Done: true}, nil
	case now.Sub(started) >= timeout:
		return DrainResult{Done: true, TimedOut: true, Remaining: remaining}, nil
	}
	return DrainResult{Remaining: remaining}, nil
}

// Summary is a short list of pods for messages.
func Summary(pods []string) string {
	if len(pods) > 5 {
		return strings.Join(pods[:5], ", ") + fmt.Sprintf(" and %d more", len(pods)-5)
	}
	return strings.Join(pods, ", ")
}
