package helmop

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
)

// updateStatus writes the last fetch's outcome and the rollup of the
// HelmOp's bundle deployments, as a GitRepo's: counts per state over
// BundleDeployments, ready clusters, the worst state, and conditions.
func (r *Reconciler) updateStatus(ctx context.Context, op, base *fleetv1.HelmOp, st *syncState) error {
	var bundles fleetv1.BundleList
	if err := r.Client.List(ctx, &bundles, client.InNamespace(op.Namespace), client.MatchingLabels{fleetv1.HelmOpNameLabel: op.Name}); err != nil {
		return fmt.Errorf("listing the bundle of %s: %w", op.Name, err)
	}
	var b *fleetv1.Bundle
	for i := range bundles.Items {
		if bundles.Items[i].Name == op.Name {
			b = &bundles.Items[i]
		}
	}
	var bds []*fleetv1.BundleDeployment
	if b != nil {
		var list fleetv1.BundleDeploymentList
		if err := r.Client.List(ctx, &list, client.MatchingLabels{fleetv1.BundleNamespaceLabel: op.Namespace}); err != nil {
			return fmt.Errorf("listing bundle deployments: %w", err)
		}
		for i := range list.Items {
			bd := &list.Items[i]
			if bd.Spec.BundleNamespace == op.Namespace && bd.Spec.BundleName == b.Name && bd.DeletionTimestamp.IsZero() {
				bds = append(bds, bd)
			}
		}
	}
	updated := base.DeepCopy()
	s := &updated.Status
	if b != nil && b.Spec.Helm != nil {
		s.Version = b.Spec.Helm.Version
	}
	if !st.lastFetch.IsZero() {
		s.LastPollingTriggered = &metav1.Time{Time: st.lastFetch.Truncate(1e9)}
	}
	computeStatus(s, op, st, b, bds)
	var observed *int64
	if st.failure == nil {
		observed = &s.ObservedGeneration
	}
	return conditions.PatchStatus(ctx, r.Client, base, updated, observed, nil, conditions.RecordTo(r.Events))
}

// computeStatus fills counts, display and conditions:
//   - a failed fetch makes Ready False with its reason: Stalled when it
//     needs a change (a bad spec, a version that does not exist, a broken
//     chart), Reconciling while retried (the network, a missing Secret, a
//     failed write);
//   - a Bundle the bundle controller refuses makes the HelmOp Stalled;
//   - otherwise Ready follows the deployments, as for a GitRepo.
func computeStatus(s *fleetv1.HelmOpStatus, op *fleetv1.HelmOp, st *syncState, b *fleetv1.Bundle, bds []*fleetv1.BundleDeployment) {
	type entry struct {
		name, cluster, message string
		state                  fleetv1.BundleState
	}
	entries := make([]entry, 0, len(bds))
	for _, bd := range bds {
		cluster := bd.Labels[fleetv1.ClusterNamespaceLabel] + "/" + bd.Labels[fleetv1.ClusterNameLabel]
		entries = append(entries, entry{name: bd.Spec.BundleName + " on " + cluster, cluster: cluster, state: bundlestate.State(bd), message: bundlestate.Message(bd)})
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if ri, rj := bundlestate.Rank(entries[i].state), bundlestate.Rank(entries[j].state); ri != rj {
			return ri > rj
		}
		return entries[i].name < entries[j].name
	})
	var sum fleetv1.BundleSummary
	ready := map[string]bool{}
	for _, e := range entries {
		bundlestate.Add(&sum, e.name, e.state, e.message)
		ready[e.cluster] = e.state == fleetv1.Ready
	}
	s.Summary = sum
	s.DesiredReadyClusters = int32(len(ready))
	s.ReadyClusters = 0
	for _, ok := range ready {
		if ok {
			s.ReadyClusters++
		}
	}
	s.Display.ReadyBundleDeployments = fmt.Sprintf("%d/%d", sum.Ready, sum.DesiredReady)
	gen := op.Generation

	f := st.failure
	if f == nil && b != nil {
		if c := meta.FindStatusCondition(b.Status.Conditions, fleetv1.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
			f = &failure{reason: fleetv1.InvalidSpecReason, message: c.Message}
		}
	}
	if f != nil {
		msg := f.message
		if f.retried {
			msg += " (retrying)"
			conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, f.reason, msg, gen)
			conditions.MarkReconciling(&s.Conditions, f.reason, msg, gen)
		} else {
			conditions.MarkStalled(&s.Conditions, f.reason, msg, gen)
		}
		s.Display.State, s.Display.Message, s.Display.Error = f.reason, conditions.Message(f.message), true
		return
	}
	meta.RemoveStatusCondition(&s.Conditions, fleetv1.StalledCondition)
	s.Display.State = string(bundlestate.WorstState(sum))
	s.Display.Message = ""
	s.Display.Error = sum.ErrApplied > 0
	switch {
	case b == nil || b.Status.ObservedGeneration != b.Generation:
		msg := "Waiting for the bundle of chart version " + st.version + " to be rolled out"
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.RolloutInProgressReason, msg, gen)
		conditions.Set(&s.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.RolloutInProgressReason, msg, gen)
		return
	case sum.DesiredReady == 0:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.NoTargetsReason, "No cluster is targeted (without targets a HelmOp deploys to ClusterGroup \"default\")", gen)
		s.Display.State = fleetv1.NoTargetsReason
	case sum.Ready == sum.DesiredReady:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.SucceededReason,
			fmt.Sprintf("Chart version %s is ready on %d/%d clusters", s.Version, s.ReadyClusters, s.DesiredReadyClusters), gen)
	case op.Spec.Paused && sum.OutOfSync > 0:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.PausedReason, "Paused: "+bundlestate.ReadyMessage(sum, "BundleDeployment"), gen)
	default:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.TargetsNotReadyReason, bundlestate.ReadyMessage(sum, "BundleDeployment"), gen)
	}
	if sum.WaitApplied+sum.Pending > 0 || (!op.Spec.Paused && sum.OutOfSync > 0) {
		conditions.Set(&s.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.RolloutInProgressReason,
			fmt.Sprintf("Rolling out chart version %s: %d waiting for agents, %d held back, %d pending", s.Version, sum.WaitApplied, sum.OutOfSync, sum.Pending), gen)
	} else {
		meta.RemoveStatusCondition(&s.Conditions, fleetv1.ReconcilingCondition)
	}
}
