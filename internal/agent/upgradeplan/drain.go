package upgradeplan

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

// drainResult is how far a drain got.
type drainResult struct {
	// done: no pod left to wait for.
	done bool
	// waiting names what is still there (an evicted pod terminating, or an
	// eviction refused by a PodDisruptionBudget) for the status.
	waiting string
}

// drainRefused is a drain that cannot succeed without a spec change (a pod
// kubectl drain would refuse too); the node fails.
type drainRefused struct{ msg string }

func (e *drainRefused) Error() string { return e.msg }

// drain evicts the node's pods as `kubectl drain` does with d's options:
// mirror pods and this controller's pods are skipped, DaemonSet pods are
// skipped with ignoreDaemonSets (else refused), pods with emptyDir need
// deleteEmptydirData, pods no controller owns need force. Evictions go
// through the eviction API so PodDisruptionBudgets hold: a refused eviction
// is retried on the next pass, as kubectl does.
func drain(ctx context.Context, c client.Client, reader client.Reader, node string, d *upgradev1.DrainSpec, now time.Time) (drainResult, error) {
	var pods corev1.PodList
	if err := reader.List(ctx, &pods, client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("spec.nodeName", node)}); err != nil {
		return drainResult{}, fmt.Errorf("listing the pods of node %s: %w", node, err)
	}
	var sel labels.Selector = labels.Everything()
	if d.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(d.PodSelector)
		if err != nil {
			return drainResult{}, &drainRefused{fmt.Sprintf("drain.podSelector: %v", err)}
		}
		sel = s
	}
	ignoreDS := d.IgnoreDaemonSets == nil || *d.IgnoreDaemonSets
	deleteEmptyDir := true
	if d.DeleteEmptydirData != nil {
		deleteEmptyDir = *d.DeleteEmptydirData
	} else if d.DeleteLocalData != nil {
		deleteEmptyDir = *d.DeleteLocalData
	}
	var refused, waiting []string
	var evict []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Labels[LabelController] != "" || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.DeletionTimestamp != nil {
			if d.SkipWaitForDeleteTimeout > 0 && now.Sub(p.DeletionTimestamp.Time) > time.Duration(d.SkipWaitForDeleteTimeout)*time.Second {
				continue
			}
			waiting = append(waiting, "pod "+p.Namespace+"/"+p.Name+" terminating")
			continue
		}
		owner := metav1.GetControllerOf(p)
		if owner != nil && owner.Kind == "DaemonSet" {
			if !ignoreDS {
				refused = append(refused, "pod "+p.Namespace+"/"+p.Name+" belongs to a DaemonSet (set drain.ignoreDaemonSets)")
			}
			continue
		}
		if owner == nil && !d.Force {
			refused = append(refused, "pod "+p.Namespace+"/"+p.Name+" has no controller and would be lost (set drain.force)")
			continue
		}
		if !deleteEmptyDir && hasEmptyDir(p) {
			refused = append(refused, "pod "+p.Namespace+"/"+p.Name+" has emptyDir data (set drain.deleteEmptydirData)")
			continue
		}
		evict = append(evict, p)
	}
	if len(refused) > 0 {
		return drainResult{}, &drainRefused{"cannot drain node " + node + ": " + strings.Join(refused, "; ")}
	}
	for _, p := range evict {
		del := &metav1.DeleteOptions{}
		if d.GracePeriod != nil && *d.GracePeriod >= 0 {
			del.GracePeriodSeconds = ptr.To(int64(*d.GracePeriod))
		}
		var err error
		if d.DisableEviction {
			err = c.Delete(ctx, p, &client.DeleteOptions{Raw: del})
		} else {
			err = c.SubResource("eviction").Create(ctx, p, &policyv1.Eviction{DeleteOptions: del})
		}
		switch {
		case err == nil || apierrors.IsNotFound(err):
			waiting = append(waiting, "pod "+p.Namespace+"/"+p.Name+" evicted")
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget refuses it for now.
			waiting = append(waiting, "pod "+p.Namespace+"/"+p.Name+" blocked by a PodDisruptionBudget")
		default:
			return drainResult{}, fmt.Errorf("evicting pod %s/%s from node %s: %w", p.Namespace, p.Name, node, err)
		}
	}
	if len(waiting) == 0 {
		return drainResult{done: true}, nil
	}
	const shown = 3
	msg := strings.Join(waiting[:min(shown, len(waiting))], "; ")
	if len(waiting) > shown {
		msg += fmt.Sprintf(" and %d more", len(waiting)-shown)
	}
	return drainResult{waiting: msg}, nil
}

func hasEmptyDir(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}
