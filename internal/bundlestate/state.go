// Package bundlestate derives Fleet's deployment states from a
// BundleDeployment's fields and rolls them up into the summaries of
// Bundles, Clusters, ClusterGroups and GitRepos. It is pure logic: the
// manager's rollup controllers, the agent and the UI share it, so a state
// means the same everywhere.
package bundlestate

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

// MaxNonReady is how many non-ready entries a status lists.
const MaxNonReady = 10

// State derives a BundleDeployment's state, as Fleet's GetDeploymentState:
// the first row that applies wins.
//
//	ErrApplied   agent has not applied spec.deploymentID and Deployed is False
//	WaitApplied  agent has not applied spec.deploymentID
//	NotReady     status.ready is false
//	OutOfSync    spec.deploymentID != spec.stagedDeploymentID (paused or held by the rollout)
//	Modified     status.nonModified is false
//	Ready        otherwise
//
// A nil BundleDeployment (a matched cluster without one yet) is Pending.
func State(bd *fleetv1.BundleDeployment) fleetv1.BundleState {
	switch {
	case bd == nil:
		return fleetv1.Pending
	case bd.Status.AppliedDeploymentID != bd.Spec.DeploymentID:
		// A deployment held back by dependsOn is waiting, not failing.
		if c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.DeployedCondition); c != nil &&
			c.Status == metav1.ConditionFalse && c.Reason != fleetv1.DependencyNotReadyReason {
			return fleetv1.ErrApplied
		}
		return fleetv1.WaitApplied
	case !bd.Status.Ready:
		return fleetv1.NotReady
	case bd.Spec.StagedDeploymentID != "" && bd.Spec.DeploymentID != bd.Spec.StagedDeploymentID:
		return fleetv1.OutOfSync
	case !bd.Status.NonModified:
		return fleetv1.Modified
	}
	return fleetv1.Ready
}

// Rank orders states from best (1, Ready) to worst (7, ErrApplied); unknown
// states rank 0.
func Rank(s fleetv1.BundleState) int { return fleetv1.StateRank[s] }

// Worse returns the worse of two states; "" counts as best.
func Worse(a, b fleetv1.BundleState) fleetv1.BundleState {
	if Rank(b) > Rank(a) {
		return b
	}
	return a
}

// Message explains a BundleDeployment's state in one line, from the agent's
// conditions and resource lists.
func Message(bd *fleetv1.BundleDeployment) string {
	if bd == nil {
		return ""
	}
	state := State(bd)
	cond := func(t string) string {
		if c := meta.FindStatusCondition(bd.Status.Conditions, t); c != nil && c.Status != metav1.ConditionTrue {
			return c.Message
		}
		return ""
	}
	switch state {
	case fleetv1.ErrApplied:
		return cond(fleetv1.DeployedCondition)
	case fleetv1.WaitApplied:
		if bd.Spec.Paused {
			return "paused"
		}
		return "waiting for the agent to apply " + shortID(bd.Spec.DeploymentID)
	case fleetv1.OutOfSync:
		if bd.Spec.Paused {
			return "paused; staged " + shortID(bd.Spec.StagedDeploymentID)
		}
		return "staged " + shortID(bd.Spec.StagedDeploymentID) + ", held back by the rollout strategy"
	case fleetv1.NotReady:
		var parts []string
		for _, r := range bd.Status.NonReadyStatus {
			p := resourceName(r.Kind, r.Namespace, r.Name)
			if r.Summary.Message != "" {
				p += " " + r.Summary.Message
			} else if r.Summary.State != "" {
				p += " " + r.Summary.State
			}
			parts = append(parts, p)
			if len(parts) == 4 {
				break
			}
		}
		if len(parts) == 0 {
			return cond(fleetv1.ReadyCondition)
		}
		return "not ready: " + strings.Join(parts, ", ")
	case fleetv1.Modified:
		var parts []string
		for _, r := range bd.Status.ModifiedStatus {
			verb := "modified"
			switch {
			case r.Missing:
				verb = "missing"
			case r.Delete:
				verb = "extra"
			}
			parts = append(parts, verb+" "+resourceName(r.Kind, r.Namespace, r.Name))
			if len(parts) == 4 {
				break
			}
		}
		return strings.Join(parts, ", ")
	}
	return ""
}

func resourceName(kind, ns, name string) string {
	if ns != "" {
		return kind + " " + ns + "/" + name
	}
	return kind + " " + name
}

func shortID(id string) string { return content.DeploymentID(id).Short() }

// Add counts one deployment of the given state in s, listing it among the
// non-ready resources (at most MaxNonReady) unless it is Ready.
func Add(s *fleetv1.BundleSummary, name string, state fleetv1.BundleState, message string) {
	s.DesiredReady++
	switch state {
	case fleetv1.Ready:
		s.Ready++
		return
	case fleetv1.NotReady:
		s.NotReady++
	case fleetv1.Pending:
		s.Pending++
	case fleetv1.OutOfSync:
		s.OutOfSync++
	case fleetv1.Modified:
		s.Modified++
	case fleetv1.WaitApplied:
		s.WaitApplied++
	case fleetv1.ErrApplied:
		s.ErrApplied++
	}
	if len(s.NonReadyResources) < MaxNonReady {
		s.NonReadyResources = append(s.NonReadyResources, fleetv1.NonReadyResource{Name: name, State: state, Message: message})
	}
}

// AddSummary adds the counts of o to s and appends o's non-ready resources
// while there is room.
func AddSummary(s *fleetv1.BundleSummary, o fleetv1.BundleSummary) {
	s.DesiredReady += o.DesiredReady
	s.Ready += o.Ready
	s.NotReady += o.NotReady
	s.Pending += o.Pending
	s.OutOfSync += o.OutOfSync
	s.Modified += o.Modified
	s.WaitApplied += o.WaitApplied
	s.ErrApplied += o.ErrApplied
	for _, r := range o.NonReadyResources {
		if len(s.NonReadyResources) >= MaxNonReady {
			break
		}
		s.NonReadyResources = append(s.NonReadyResources, r)
	}
}

// SortNonReady orders the non-ready list worst state first, then by name, so
// statuses do not flap between equivalent orders.
func SortNonReady(s *fleetv1.BundleSummary) {
	sort.SliceStable(s.NonReadyResources, func(i, j int) bool {
		a, b := s.NonReadyResources[i], s.NonReadyResources[j]
		if Rank(a.State) != Rank(b.State) {
			return Rank(a.State) > Rank(b.State)
		}
		return a.Name < b.Name
	})
}

// WorstState is the worst state counted in s, or "" when s counts nothing.
func WorstState(s fleetv1.BundleSummary) fleetv1.BundleState {
	for _, c := range []struct {
		n     int32
		state fleetv1.BundleState
	}{
		{s.ErrApplied, fleetv1.ErrApplied}, {s.WaitApplied, fleetv1.WaitApplied},
		{s.Modified, fleetv1.Modified}, {s.OutOfSync, fleetv1.OutOfSync},
		{s.Pending, fleetv1.Pending}, {s.NotReady, fleetv1.NotReady}, {s.Ready, fleetv1.Ready},
	} {
		if c.n > 0 {
			return c.state
		}
	}
	return ""
}

// ReadyMessage summarizes the non-ready members of s like Fleet's
// ReadyMessage: counts per state, worst first, each followed by the listed
// members of that state, e.g.
// "WaitApplied(1) [Cluster fleet-default/c1: waiting for the agent]".
// kind names what the entries are ("Cluster" for a bundle's entries,
// "Bundle" for a cluster's). It is "" when everything is Ready.
func ReadyMessage(s fleetv1.BundleSummary, kind string) string {
	var out []string
	for _, c := range []struct {
		n     int32
		state fleetv1.BundleState
	}{
		{s.ErrApplied, fleetv1.ErrApplied}, {s.WaitApplied, fleetv1.WaitApplied},
		{s.Modified, fleetv1.Modified}, {s.OutOfSync, fleetv1.OutOfSync},
		{s.Pending, fleetv1.Pending}, {s.NotReady, fleetv1.NotReady},
	} {
		if c.n == 0 {
			continue
		}
		var items []string
		for _, r := range s.NonReadyResources {
			if r.State != c.state {
				continue
			}
			item := kind + " " + r.Name
			if r.Message != "" {
				item += ": " + r.Message
			}
			items = append(items, item)
		}
		msg := fmt.Sprintf("%s(%d)", c.state, c.n)
		if len(items) > 0 {
			msg += " [" + strings.Join(items, "; ") + "]"
		}
		out = append(out, msg)
	}
	return strings.Join(out, "; ")
}

// Entry is one deployment's contribution to a rollup: a cluster's in a
// Bundle's status, a bundle's in a Cluster's.
type Entry struct {
	Name    string
	State   fleetv1.BundleState
	Message string
}

// Summarize counts entries by state, worst first, so the capped list of
// non-ready entries shows the worst ones.
func Summarize(entries []Entry) fleetv1.BundleSummary {
	sorted := slices.Clone(entries)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if Rank(a.State) != Rank(b.State) {
			return Rank(a.State) > Rank(b.State)
		}
		return a.Name < b.Name
	})
	var s fleetv1.BundleSummary
	for _, e := range sorted {
		Add(&s, e.Name, e.State, e.Message)
	}
	return s
}
