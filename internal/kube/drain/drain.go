// Package drain moves the pods off a Kubernetes node the way `kubectl
// drain` does, one pass at a time: controllers call Step on every
// reconcile until it reports the node drained, so no reconcile blocks
// waiting for pods to terminate (kubectl's own k8s.io/kubectl/pkg/drain
// waits inside the call, which a controller cannot afford).
//
// Every caller shares the same rules: mirror pods and finished pods do not
// matter; DaemonSet pods stay with IgnoreDaemonSets, else the drain is
// refused; pods no controller owns need Force; pods with emptyDir volumes
// need DeleteEmptyDirData. Pods go through the eviction API, so
// PodDisruptionBudgets hold: an eviction a budget refuses (HTTP 429) is
// tried again at the next Step.
package drain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options are kubectl drain's flags. Refusals name the DrainSpec field
// (SUC's and Elemental's drain) that would allow the pod to move.
type Options struct {
	// IgnoreDaemonSets leaves DaemonSet pods on the node; without it a
	// DaemonSet pod refuses the drain.
	IgnoreDaemonSets bool
	// DeleteEmptyDirData evicts pods with emptyDir volumes (their data is
	// lost); without it such a pod refuses the drain.
	DeleteEmptyDirData bool
	// Force evicts pods no controller owns (nothing recreates them);
	// without it such a pod refuses the drain.
	Force bool
	// DisableEviction deletes pods instead of evicting them, bypassing
	// PodDisruptionBudgets.
	DisableEviction bool
	// GracePeriodSeconds overrides the pods' termination grace period.
	GracePeriodSeconds *int64
	// SkipWaitForDeleteTimeout stops waiting for pods deleted longer ago
	// than this (0: always wait).
	SkipWaitForDeleteTimeout time.Duration
	// PodSelector limits the drain to the pods it matches (nil: all).
	PodSelector labels.Selector
	// Skip leaves pods alone that the caller must not move (its own).
	Skip func(*corev1.Pod) bool
}

// Pending is a pod the drain still waits for, and why.
type Pending struct {
	// Pod is namespace/name.
	Pod string
	// Why: "evicted", "terminating" or "blocked by a PodDisruptionBudget"
	// with what the budget says ("(the disruption budget web needs 2
	// healthy pods and has 2 currently)").
	Why string
}

// Why values.
const (
	Evicted      = "evicted"
	Terminating  = "terminating"
	BlockedByPDB = "blocked by a PodDisruptionBudget"
)

// Result is how far a drain got.
type Result struct {
	// Done: no pod left to wait for.
	Done bool
	// Pending is what is left, in the node's pod order.
	Pending []Pending
}

// Pods names the pending pods (namespace/name).
func (r Result) Pods() []string {
	out := make([]string, 0, len(r.Pending))
	for _, p := range r.Pending {
		out = append(out, p.Pod)
	}
	return out
}

// Blocked reports whether a PodDisruptionBudget holds a pending pod.
func (r Result) Blocked() bool {
	return slices.ContainsFunc(r.Pending, func(p Pending) bool { return strings.HasPrefix(p.Why, BlockedByPDB) })
}

// String says what the drain waits for, at most three pods named
// ("pod a/b blocked by a PodDisruptionBudget; pod c/d evicted and 2 more").
func (r Result) String() string {
	const shown = 3
	parts := make([]string, 0, shown)
	for _, p := range r.Pending[:min(shown, len(r.Pending))] {
		parts = append(parts, "pod "+p.Pod+" "+p.Why)
	}
	s := strings.Join(parts, "; ")
	if len(r.Pending) > shown {
		s += fmt.Sprintf(" and %d more", len(r.Pending)-shown)
	}
	return s
}

// RefusedError is a drain that cannot succeed without changing its
// options: a pod kubectl drain would refuse too.
type RefusedError struct {
	Node string
	// Reasons name each refusing pod and the option that would move it.
	Reasons []string
}

func (e *RefusedError) Error() string {
	return "cannot drain node " + e.Node + ": " + strings.Join(e.Reasons, "; ")
}

// Cluster is what a drain needs of a cluster's API.
type Cluster interface {
	// PodsOn lists the pods bound to node.
	PodsOn(ctx context.Context, node string) ([]corev1.Pod, error)
	// Evict asks the eviction API to evict p.
	Evict(ctx context.Context, p *corev1.Pod, opts *metav1.DeleteOptions) error
	// Delete deletes p.
	Delete(ctx context.Context, p *corev1.Pod, opts *metav1.DeleteOptions) error
}

// Step evicts what is left on node and reports whether it is drained. It
// does not cordon: callers cordon first (each records its own ownership of
// the cordon).
func Step(ctx context.Context, c Cluster, node string, o Options, now time.Time) (Result, error) {
	pods, err := c.PodsOn(ctx, node)
	if err != nil {
		return Result{}, fmt.Errorf("listing the pods of node %s: %w", node, err)
	}
	evict, pending, refused := Classify(pods, o, now)
	if len(refused) > 0 {
		return Result{}, &RefusedError{Node: node, Reasons: refused}
	}
	for _, p := range evict {
		del := &metav1.DeleteOptions{GracePeriodSeconds: o.GracePeriodSeconds}
		name := p.Namespace + "/" + p.Name
		if o.DisableEviction {
			err = c.Delete(ctx, p, del)
		} else {
			err = c.Evict(ctx, p, del)
		}
		switch {
		case err == nil || apierrors.IsNotFound(err):
			pending = append(pending, Pending{name, Evicted})
		case apierrors.IsTooManyRequests(err):
			pending = append(pending, Pending{name, BlockedByPDB + budgetSays(err)})
		default:
			return Result{}, fmt.Errorf("evicting pod %s from node %s: %w", name, node, err)
		}
	}
	return Result{Done: len(pending) == 0, Pending: pending}, nil
}

// budgetSays is the API server's explanation of a refused eviction.
func budgetSays(err error) string {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Details == nil {
		return ""
	}
	for _, c := range st.Status().Details.Causes {
		if c.Type == policyv1.DisruptionBudgetCause && c.Message != "" {
			return " (" + strings.TrimSuffix(c.Message, ".") + ")"
		}
	}
	return ""
}

// Classify splits a node's pods into those to evict now, those the drain
// waits for (terminating) and the reasons it refuses.
func Classify(pods []corev1.Pod, o Options, now time.Time) (evict []*corev1.Pod, pending []Pending, refused []string) {
	for i := range pods {
		p := &pods[i]
		name := p.Namespace + "/" + p.Name
		if o.Skip != nil && o.Skip(p) || o.PodSelector != nil && !o.PodSelector.Matches(labels.Set(p.Labels)) {
			continue
		}
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.DeletionTimestamp != nil {
			if o.SkipWaitForDeleteTimeout > 0 && now.Sub(p.DeletionTimestamp.Time) > o.SkipWaitForDeleteTimeout {
				continue
			}
			pending = append(pending, Pending{name, Terminating})
			continue
		}
		owner := metav1.GetControllerOf(p)
		switch {
		case owner != nil && owner.Kind == "DaemonSet":
			if !o.IgnoreDaemonSets {
				refused = append(refused, "pod "+name+" belongs to a DaemonSet (set drain.ignoreDaemonSets)")
			}
			continue
		case owner == nil && !o.Force:
			refused = append(refused, "pod "+name+" has no controller and would be lost (set drain.force)")
			continue
		case !o.DeleteEmptyDirData && hasEmptyDir(p):
			refused = append(refused, "pod "+name+" has emptyDir data (set drain.deleteEmptydirData)")
			continue
		}
		evict = append(evict, p)
	}
	return evict, pending, refused
}

func hasEmptyDir(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.EmptyDir != nil })
}

// Clientset is a Cluster over a typed client (a formed cluster reached
// through its tunnel).
func Clientset(cs kubernetes.Interface) Cluster { return clientset{cs} }

type clientset struct{ cs kubernetes.Interface }

func (c clientset) PodsOn(ctx context.Context, node string) ([]corev1.Pod, error) {
	l, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Evict sends the eviction once: client-go retries a 429 carrying
// Retry-After up to ten times, and the API server sends Retry-After: 10
// while a new PodDisruptionBudget is not processed yet, which would hold a
// reconcile for minutes. Step tries again at the next pass instead.
func (c clientset) Evict(ctx context.Context, p *corev1.Pod, opts *metav1.DeleteOptions) error {
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}, DeleteOptions: opts}
	return c.cs.CoreV1().RESTClient().Post().MaxRetries(0).
		Namespace(p.Namespace).Resource("pods").Name(p.Name).SubResource("eviction").
		Body(ev).Do(ctx).Error()
}

func (c clientset) Delete(ctx context.Context, p *corev1.Pod, opts *metav1.DeleteOptions) error {
	return c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, *opts)
}

// ControllerRuntime is a Cluster over a controller-runtime client; reader
// lists the pods (an API reader: the field selector spec.nodeName is the
// API server's). Its evictions go through client-go's retries of a 429
// with Retry-After (a budget not processed yet): fine where a disruption
// controller runs, as in the clusters the cluster agent serves.
func ControllerRuntime(c client.Client, reader client.Reader) Cluster { return crClient{c, reader} }

type crClient struct {
	c      client.Client
	reader client.Reader
}

func (c crClient) PodsOn(ctx context.Context, node string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := c.reader.List(ctx, &pods, client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("spec.nodeName", node)}); err != nil {
		return nil, err
	}
	return pods.Items, nil
}

func (c crClient) Evict(ctx context.Context, p *corev1.Pod, opts *metav1.DeleteOptions) error {
	return c.c.SubResource("eviction").Create(ctx, p, &policyv1.Eviction{DeleteOptions: opts})
}

func (c crClient) Delete(ctx context.Context, p *corev1.Pod, opts *metav1.DeleteOptions) error {
	return c.c.Delete(ctx, p, &client.DeleteOptions{Raw: opts})
}

// SetUnschedulable cordons (true) or uncordons (false) a node; a missing
// node is not an error (nothing to cordon).
func SetUnschedulable(ctx context.Context, cs kubernetes.Interface, node string, unschedulable bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)
	_, err := cs.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
