package targeting

import (
	"errors"
	"fmt"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// BundleMatcher is a Bundle's targets, restrictions and partitions compiled
// once for matching many clusters.
type BundleMatcher struct {
	bundle         *fleetv1.Bundle
	customizations []compiledTarget
	targets        []compiledTarget
	restrictions   []*matcher
}

type compiledTarget struct {
	m      *matcher
	target *fleetv1.BundleTarget
	name   string
}

// TargetName is the name of the i-th entry of spec.targets: its own name or
// target000, target001, ... as Fleet names unnamed targets.
func TargetName(t *fleetv1.BundleTarget, i int) string {
	if t.Name != "" {
		return t.Name
	}
	return fmt.Sprintf("target%03d", i)
}

// CustomizationCount is how many leading entries of spec.targets are target
// customizations rather than targets. `edgefleet apply` (like `fleet apply`)
// puts fleet.yaml's targetCustomizations first and the real targets after,
// and copies the real targets into targetRestrictions; so the first
// len(targets)-len(targetRestrictions) entries are customizations. Without
// restrictions every entry is a plain target.
func CustomizationCount(b *fleetv1.Bundle) int {
	if len(b.Spec.TargetRestrictions) == 0 {
		return 0
	}
	return max(0, len(b.Spec.Targets)-len(b.Spec.TargetRestrictions))
}

// NewBundleMatcher compiles b's targets. The error names the first entry
// whose selector cannot be parsed, e.g.
// `spec.targets[1] ("prod"): clusterSelector: ...`.
func NewBundleMatcher(b *fleetv1.Bundle) (*BundleMatcher, error) {
	bm := &BundleMatcher{bundle: b}
	nCustom := CustomizationCount(b)
	var errs []error
	for i := range b.Spec.Targets {
		t := &b.Spec.Targets[i]
		m, err := compile(FromTarget(t))
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.targets[%d] (%q): %w", i, TargetName(t, i), err))
			continue
		}
		ct := compiledTarget{m: m, target: t, name: TargetName(t, i)}
		if i < nCustom {
			bm.customizations = append(bm.customizations, ct)
		} else {
			bm.targets = append(bm.targets, ct)
		}
	}
	for i := range b.Spec.TargetRestrictions {
		r := &b.Spec.TargetRestrictions[i]
		m, err := compile(FromRestriction(r))
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.targetRestrictions[%d] (%q): %w", i, r.Name, err))
			continue
		}
		bm.restrictions = append(bm.restrictions, m)
	}
	if rs := b.Spec.RolloutStrategy; rs != nil {
		for i := range rs.Partitions {
			if err := FromPartition(&rs.Partitions[i]).Validate(); err != nil {
				errs = append(errs, fmt.Errorf("spec.rolloutStrategy.partitions[%d] (%q): %w", i, rs.Partitions[i].Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return bm, nil
}

// Target decides whether bundle is deployed to cluster and with which
// options. groups are the ClusterGroups to consider (those the cluster is not
// a member of are ignored). An invalid bundle matches nothing; use
// NewBundleMatcher to learn why.
func Target(bundle *fleetv1.Bundle, cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup) (opts fleetv1.BundleDeploymentOptions, targetName string, matched bool) {
	bm, err := NewBundleMatcher(bundle)
	if err != nil {
		return fleetv1.BundleDeploymentOptions{}, "", false
	}
	return bm.Target(cluster, groups)
}

// Target is the package-level Target with the bundle's selectors compiled.
//
// The first plain target that matches wins, provided the cluster also
// matches one target restriction (an allow-list, when present); restriction
// and target must hold through the same group, as in Fleet. A winning target
// with doNotDeploy, or no match, means no deployment. Then the first matching
// customization, regardless of restrictions, replaces the target's own
// options (doNotDeploy there also means no deployment). The result is the
// bundle's options with those options merged over them.
func (bm *BundleMatcher) Target(cluster *fleetv1.Cluster, groups []*fleetv1.ClusterGroup) (opts fleetv1.BundleDeploymentOptions, targetName string, matched bool) {
	member := MemberGroups(cluster, groups)
	var winner *compiledTarget
	for i := range bm.targets {
		if bm.targetMatches(bm.targets[i].m, cluster, member) {
			winner = &bm.targets[i]
			break
		}
	}
	if winner == nil || winner.target.DoNotDeploy {
		return fleetv1.BundleDeploymentOptions{}, "", false
	}
	custom := winner.target.BundleDeploymentOptions
	if bm.bundle.Spec.TargetCustomizationMode == fleetv1.AllMatches {
		// Fleet v0.16: every matching customization, merged in order; a
		// doNotDeploy in any of them wins.
		opts := bm.bundle.Spec.BundleDeploymentOptions
		matchedAny := false
		for _, c := range bm.customizations {
			if !c.m.matches(cluster, member) {
				continue
			}
			if c.target.DoNotDeploy {
				return fleetv1.BundleDeploymentOptions{}, "", false
			}
			opts, matchedAny = Merge(opts, c.target.BundleDeploymentOptions), true
		}
		if !matchedAny {
			opts = Merge(opts, custom)
		}
		return opts, winner.name, true
	}
	for _, c := range bm.customizations {
		if c.m.matches(cluster, member) {
			if c.target.DoNotDeploy {
				return fleetv1.BundleDeploymentOptions{}, "", false
			}
			custom = c.target.BundleDeploymentOptions
			break
		}
	}
	return Merge(bm.bundle.Spec.BundleDeploymentOptions, custom), winner.name, true
}

// targetMatches evaluates target and restrictions group by group, like
// Fleet's matcher: a cluster in no group is evaluated once without a group.
func (bm *BundleMatcher) targetMatches(t *matcher, cluster *fleetv1.Cluster, member []*fleetv1.ClusterGroup) bool {
	try := func(groups []*fleetv1.ClusterGroup) bool {
		if !t.matches(cluster, groups) {
			return false
		}
		if len(bm.restrictions) == 0 {
			return true
		}
		for _, r := range bm.restrictions {
			if r.matches(cluster, groups) {
				return true
			}
		}
		return false
	}
	if len(member) == 0 {
		return try(nil)
	}
	for _, g := range member {
		if try([]*fleetv1.ClusterGroup{g}) {
			return true
		}
	}
	return false
}
