package gitrepo

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
)

// lastPollingWrite limits how often a poll alone rewrites
// status.lastPollingTriggered: every poll would cost an etcd write.
const lastPollingWrite = time.Minute

// markUpdating shows GitUpdating while a new commit is fetched and
// rendered. It is best effort: the final status follows anyway.
func (r *Reconciler) markUpdating(ctx context.Context, base *fleetv1.GitRepo, commit string) {
	updated := base.DeepCopy()
	st := &updated.Status
	st.Display.State = fleetv1.GitRepoStateGitUpdating
	st.Display.Message = "Fetching and rendering commit " + shortCommit(commit)
	st.Display.Error = false
	conditions.Set(&st.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.ProgressingReason, st.Display.Message, base.Generation)
	if err := conditions.PatchStatus(ctx, r.Client, base, updated, nil, nil, conditions.RecordTo(r.Events)); err != nil {
		logf.FromContext(ctx).V(1).Info("Could not mark GitRepo as updating", "error", err.Error())
		return
	}
	*base = *updated
}

// updateStatus writes what sync learnt and the rollup of the GitRepo's
// Bundles, when anything changed.
func (r *Reconciler) updateStatus(ctx context.Context, gr, base *fleetv1.GitRepo, st *syncState) error {
	var bundles fleetv1.BundleList
	if err := r.Client.List(ctx, &bundles, client.InNamespace(gr.Namespace), client.MatchingLabels{fleetv1.RepoNameLabel: gr.Name}); err != nil {
		return fmt.Errorf("listing bundles of %s: %w", gr.Name, err)
	}
	names := map[string]bool{}
	var bs bundleStates
	seen := map[string]bool{}
	for _, b := range bundles.Items {
		names[b.Name] = true
		if commit, ok := st.written[b.Name]; ok {
			if b.Labels[fleetv1.CommitLabel] != commit {
				bs.unprocessed = append(bs.unprocessed, b.Name)
				continue
			}
			seen[b.Name] = true
		}
		if c := meta.FindStatusCondition(b.Status.Conditions, fleetv1.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
			bs.stalled = append(bs.stalled, c.Message)
		} else if b.Status.ObservedGeneration != b.Generation {
			bs.unprocessed = append(bs.unprocessed, b.Name)
		}
	}
	for name := range st.written {
		if !names[name] {
			bs.unprocessed = append(bs.unprocessed, name) // created, not cached yet
		}
	}
	for name := range seen {
		if !slices.Contains(bs.unprocessed, name) {
			delete(st.written, name) // the cache caught up
		}
	}
	var bds []*fleetv1.BundleDeployment
	if len(names) > 0 {
		var list fleetv1.BundleDeploymentList
		if err := r.Client.List(ctx, &list, client.MatchingLabels{fleetv1.BundleNamespaceLabel: gr.Namespace}); err != nil {
			return fmt.Errorf("listing bundle deployments: %w", err)
		}
		for i := range list.Items {
			bd := &list.Items[i]
			if bd.Spec.BundleNamespace == gr.Namespace && names[bd.Spec.BundleName] && bd.DeletionTimestamp.IsZero() {
				bds = append(bds, bd)
			}
		}
	}

	updated := base.DeepCopy()
	s := &updated.Status
	s.Commit = gr.Status.Commit
	s.ObservedGeneration = gr.Status.ObservedGeneration
	if !st.lastPoll.IsZero() && (s.LastPollingTriggered == nil || st.lastPoll.Sub(s.LastPollingTriggered.Time) >= max(pollingInterval(gr), lastPollingWrite)) {
		s.LastPollingTriggered = &metav1.Time{Time: st.lastPoll.Truncate(time.Second)}
	}
	setWarningsCondition(s, gr.Generation, st.warnings)
	computeStatus(s, gr, st.failure, st.fetchFailed, bds, bs)
	return conditions.PatchStatus(ctx, r.Client, base, updated, nil, nil, conditions.RecordTo(r.Events))
}

// terminal tells whether a sync failure needs someone to change the GitRepo
// or push a new commit (the GitRepo is Stalled) rather than being one the
// controller retries until it clears by itself (Reconciling, Ready False):
// the network (a chart download included), the git server, credentials
// fixed in a Secret, a branch not pushed yet, a failed write to the API
// server. Retrying a terminal failure (the controller still does, with
// backoff) gives the same answer: the spec is refused, or the commit
// cannot be read as it is.
func (f *failure) terminal() bool { return !f.network && terminal(f.reason) }

// terminal tells whether a failure reason is terminal (see failure.terminal).
func terminal(reason string) bool {
	switch reason {
	case fleetv1.InvalidSpecReason, // a Bundle of the repository is refused
		fleetv1.LocalRepositoryNotAllowedReason, // spec.repo, until it changes
		fleetv1.NetworkNotAllowedReason,         // spec.repo or the server flags
		fleetv1.UnsafeCommitReason,              // the commit, until it changes
		fleetv1.CheckoutTooLargeReason,
		fleetv1.PathNotFoundReason,
		fleetv1.RenderErrorReason,
		fleetv1.RestrictedReason: // until the GitRepo or its restrictions change
		return true
	}
	return false
}

// bundleStates are the repository's bundles the bundle controller has not
// processed yet (by name), or refuses (Stalled, by message).
type bundleStates struct {
	unprocessed []string
	stalled     []string
}

type entry struct {
	name    string
	cluster string
	state   fleetv1.BundleState
	message string
}

// computeStatus fills the counts, display and conditions:
//   - summary counts the repository's BundleDeployments by state;
//   - desiredReadyClusters counts the clusters with at least one of them,
//     readyClusters those where all of them are Ready;
//   - a sync failure makes Ready False with its reason, and Stalled True
//     when it is terminal, Reconciling True when it is being retried;
//     otherwise Ready follows the deployments, and Reconciling is True
//     while a rollout is in progress or some bundles have changes the
//     bundle controller has not turned into deployments yet; a Stalled
//     bundle (e.g. invalid targets) makes the GitRepo Stalled too.
func computeStatus(s *fleetv1.GitRepoStatus, gr *fleetv1.GitRepo, f *failure, fetchFailed bool, bds []*fleetv1.BundleDeployment, bs bundleStates) {
	entries := make([]entry, 0, len(bds))
	for _, bd := range bds {
		cluster := bd.Labels[fleetv1.ClusterNamespaceLabel] + "/" + bd.Labels[fleetv1.ClusterNameLabel]
		if bd.Labels[fleetv1.ClusterNameLabel] == "" {
			cluster = bd.Namespace
		}
		entries = append(entries, entry{name: bd.Spec.BundleName + " on " + cluster, cluster: cluster, state: bundlestate.State(bd), message: bundlestate.Message(bd)})
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if bundlestate.Rank(a.state) != bundlestate.Rank(b.state) {
			return bundlestate.Rank(a.state) > bundlestate.Rank(b.state)
		}
		return a.name < b.name
	})
	var sum fleetv1.BundleSummary
	clusters := map[string]bool{}
	for _, e := range entries {
		bundlestate.Add(&sum, e.name, e.state, e.message)
		ready, seen := clusters[e.cluster]
		clusters[e.cluster] = (ready || !seen) && e.state == fleetv1.Ready
	}
	s.Summary = sum
	s.DesiredReadyClusters = int32(len(clusters))
	s.ReadyClusters = 0
	for _, ready := range clusters {
		if ready {
			s.ReadyClusters++
		}
	}
	s.Display.ReadyBundleDeployments = fmt.Sprintf("%d/%d", sum.Ready, sum.DesiredReady)

	gen := gr.Generation
	switch {
	case f != nil && fetchFailed:
		conditions.Set(&s.Conditions, fleetv1.FetchedCondition, metav1.ConditionFalse, f.reason, f.message, gen)
	case s.Commit != "":
		conditions.Set(&s.Conditions, fleetv1.FetchedCondition, metav1.ConditionTrue, fleetv1.SucceededReason, "Fetched commit "+shortCommit(s.Commit), gen)
	}
	if f == nil && len(bs.stalled) > 0 {
		sort.Strings(bs.stalled)
		f = &failure{reason: fleetv1.InvalidSpecReason, message: strings.Join(bs.stalled, "; ")}
	}
	if f != nil {
		msg := f.message
		switch {
		case s.Commit != "":
			msg += fmt.Sprintf(" (retrying; bundles it could not produce stay as at commit %s or before)", shortCommit(s.Commit))
		case !f.terminal():
			msg += " (retrying)"
		}
		if f.terminal() {
			conditions.MarkStalled(&s.Conditions, f.reason, msg, gen)
		} else {
			conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, f.reason, msg, gen)
			conditions.MarkReconciling(&s.Conditions, f.reason, msg, gen)
		}
		s.Display.State = f.reason
		s.Display.Message = conditions.Message(f.message)
		s.Display.Error = true
		return
	}
	meta.RemoveStatusCondition(&s.Conditions, fleetv1.StalledCondition)
	s.Display.State = string(bundlestate.WorstState(sum))
	s.Display.Message = ""
	s.Display.Error = sum.ErrApplied > 0
	sort.Strings(bs.unprocessed)
	switch {
	case len(bs.unprocessed) > 0:
		msg := fmt.Sprintf("Waiting for %d bundle(s) to be rolled out: %s", len(bs.unprocessed), strings.Join(bs.unprocessed, ", "))
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.RolloutInProgressReason, msg, gen)
		conditions.Set(&s.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.RolloutInProgressReason, msg, gen)
		if s.Display.State == string(fleetv1.Ready) || s.Display.State == "" {
			s.Display.State = fleetv1.GitRepoStateGitUpdating
		}
		return
	case sum.DesiredReady == 0:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.NoTargetsReason, "No cluster is targeted by the repository's bundles (without targets a GitRepo deploys to ClusterGroup \"default\")", gen)
		s.Display.State = fleetv1.NoTargetsReason
	case sum.Ready == sum.DesiredReady:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionTrue, fleetv1.SucceededReason,
			fmt.Sprintf("Commit %s is ready on %d/%d clusters", shortCommit(s.Commit), s.ReadyClusters, s.DesiredReadyClusters), gen)
	case gr.Spec.Paused && sum.OutOfSync > 0:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.PausedReason, "Paused: "+bundlestate.ReadyMessage(sum, "BundleDeployment"), gen)
	default:
		conditions.Set(&s.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.TargetsNotReadyReason, bundlestate.ReadyMessage(sum, "BundleDeployment"), gen)
	}
	if sum.WaitApplied+sum.Pending > 0 || (!gr.Spec.Paused && sum.OutOfSync > 0) {
		conditions.Set(&s.Conditions, fleetv1.ReconcilingCondition, metav1.ConditionTrue, fleetv1.RolloutInProgressReason,
			fmt.Sprintf("Rolling out commit %s: %d waiting for agents, %d held back, %d pending", shortCommit(s.Commit), sum.WaitApplied, sum.OutOfSync, sum.Pending), gen)
	} else {
		meta.RemoveStatusCondition(&s.Conditions, fleetv1.ReconcilingCondition)
	}
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
