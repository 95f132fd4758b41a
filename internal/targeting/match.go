// Package targeting decides which clusters receive a bundle and with which
// options, following Rancher Fleet's semantics: target matching, target
// customizations, option merging, deployment IDs and rollout budgets. It is
// pure logic: no API calls. Deployment states and their rollups live in
// internal/bundlestate.
package targeting

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// Criteria are the cluster selection fields shared by targets, target
// restrictions and rollout partitions. Every criterion that is set must
// match; a Criteria with nothing set matches no cluster.
type Criteria struct {
	ClusterName          string
	ClusterSelector      *metav1.LabelSelector
	ClusterGroup         string
	ClusterGroupSelector *metav1.LabelSelector
}

// FromTarget returns the selection criteria of a bundle target.
func FromTarget(t *fleetv1.BundleTarget) Criteria {
	return Criteria{ClusterName: t.ClusterName, ClusterSelector: t.ClusterSelector, ClusterGroup: t.ClusterGroup, ClusterGroupSelector: t.ClusterGroupSelector}
}

// FromRestriction returns the selection criteria of a target restriction.
func FromRestriction(t *fleetv1.BundleTargetRestriction) Criteria {
	return Criteria{ClusterName: t.ClusterName, ClusterSelector: t.ClusterSelector, ClusterGroup: t.ClusterGroup, ClusterGroupSelector: t.ClusterGroupSelector}
}

// FromPartition returns the selection criteria of a rollout partition.
func FromPartition(p *fleetv1.Partition) Criteria {
	return Criteria{ClusterName: p.ClusterName, ClusterSelector: p.ClusterSelector, ClusterGroup: p.ClusterGroup, ClusterGroupSelector: p.ClusterGroupSelector}
}

func (c Criteria) empty() bool {
	return c.ClusterName == "" && c.ClusterSelector == nil && c.ClusterGroup == "" && c.ClusterGroupSelector == nil
}

// Validate reports whether the label selectors of c can be parsed.
func (c Criteria) Validate() error {
	_, err := compile(c)
	return err
}

// Matches reports whether cluster is selected by criteria. groups are the
// ClusterGroups to consider (typically every group of the cluster's
// namespace); a cluster is in a group when the group is in the cluster's
// namespace and the group's selector matches the cluster's labels.
//
// clusterName matches the Cluster's name or its ClusterDisplayNameLabel;
// clusterSelector matches the cluster's labels; clusterGroup and
// clusterGroupSelector must both be satisfied by one group the cluster is in.
// A selector that cannot be parsed matches nothing (see Validate).
func Matches(c Criteria, cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup) bool {
	m, err := compile(c)
	if err != nil {
		return false
	}
	return m.matches(cluster, groups)
}

// matcher is Criteria with its selectors parsed once.
type matcher struct {
	empty    bool
	name     string
	sel      labels.Selector
	group    string
	groupSel labels.Selector
}

func compile(c Criteria) (*matcher, error) {
	m := &matcher{empty: c.empty(), name: c.ClusterName, group: c.ClusterGroup}
	var err error
	if c.ClusterSelector != nil {
		if m.sel, err = metav1.LabelSelectorAsSelector(c.ClusterSelector); err != nil {
			return nil, fmt.Errorf("clusterSelector: %w", err)
		}
	}
	if c.ClusterGroupSelector != nil {
		if m.groupSel, err = metav1.LabelSelectorAsSelector(c.ClusterGroupSelector); err != nil {
			return nil, fmt.Errorf("clusterGroupSelector: %w", err)
		}
	}
	return m, nil
}

func (m *matcher) matches(cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup) bool {
	if m.empty || cluster == nil {
		return false
	}
	if m.name != "" && m.name != cluster.Name && m.name != cluster.Labels[fleetv1.ClusterDisplayNameLabel] {
		return false
	}
	if m.sel != nil && !m.sel.Matches(labels.Set(cluster.Labels)) {
		return false
	}
	if m.group == "" && m.groupSel == nil {
		return true
	}
	for _, g := range groups {
		if !InGroup(cluster, g) {
			continue
		}
		if m.group != "" && m.group != g.Name {
			continue
		}
		if m.groupSel != nil && !m.groupSel.Matches(labels.Set(g.Labels)) {
			continue
		}
		return true
	}
	return false
}

// InGroup reports whether cluster is a member of group: same namespace and
// the group's selector matches the cluster's labels. An absent selector
// selects no cluster; an empty one selects all.
func InGroup(cluster *fleetv1.Cluster, group *fleetv1.ClusterGroup) bool {
	if group == nil || cluster == nil || group.Namespace != cluster.Namespace || group.Spec.Selector == nil {
		return false
	}
	return selectorMatches(group.Spec.Selector, cluster.Labels)
}

// MemberGroups returns the groups cluster is a member of.
func MemberGroups(cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup) []*fleetv1.ClusterGroup {
	var out []*fleetv1.ClusterGroup
	for _, g := range groups {
		if InGroup(cluster, g) {
			out = append(out, g)
		}
	}
	return out
}

func selectorMatches(sel *metav1.LabelSelector, set map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(set))
}
