package targeting

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlestate"
)

// Rollout defaults, as in Fleet.
var (
	DefaultMaxUnavailable           = intstr.FromString("100%")
	DefaultMaxUnavailablePartitions = intstr.FromInt32(0)
	DefaultAutoPartitionSize        = intstr.FromString("25%")
)

// AutoPartitionThreshold is the number of targets below which automatic
// partitioning puts every cluster in one partition named "All", unless
// rolloutStrategy.autoPartitionThreshold says otherwise.
const AutoPartitionThreshold = 200

// UnpartitionedName names the partition of clusters that match none of the
// explicit partitions. Fleet never stages such clusters at all; edgefleet
// rolls them out last instead.
const UnpartitionedName = "Unpartitioned"

// RolloutTarget is one cluster a bundle is deployed to.
type RolloutTarget struct {
	Cluster *fleetv1.Cluster
	// Groups are the ClusterGroups to consider for partition matching.
	Groups []*fleetv1.ClusterGroup
	// DeploymentID and Options are the computed (staged) deployment.
	DeploymentID string
	Options      fleetv1.BundleDeploymentOptions
	// Paused holds back promotion (bundle or cluster paused).
	Paused bool
	// Offline clusters (agent not connected) do not count against the
	// unavailability budgets: an unreachable cluster must not stall the
	// rollout for everyone else.
	Offline bool
	// Deployment is the cluster's BundleDeployment (a new, empty one when
	// none exists yet). Rollout writes the staged fields and, when the
	// budget allows, promotes them.
	Deployment *fleetv1.BundleDeployment
}

// RolloutStatus is the outcome of Rollout.
type RolloutStatus struct {
	MaxUnavailable           int
	Unavailable              int
	MaxUnavailablePartitions int
	UnavailablePartitions    int
	Partitions               []fleetv1.PartitionStatus
}

// Unconstrained reports whether a rollout strategy can never hold back a
// promotion: no explicit partitions and maxUnavailable unset or 100%. Such
// bundles are promoted per cluster without looking at the other clusters.
func Unconstrained(rs *fleetv1.RolloutStrategy) bool {
	if rs == nil {
		return true
	}
	if len(rs.Partitions) > 0 {
		return false
	}
	return rs.MaxUnavailable == nil || (rs.MaxUnavailable.Type == intstr.String && strings.TrimSpace(rs.MaxUnavailable.StrVal) == "100%")
}

// Stage writes the computed deployment into t.Deployment's staged fields.
func Stage(t *RolloutTarget) {
	t.Deployment.Spec.StagedDeploymentID = t.DeploymentID
	t.Deployment.Spec.StagedOptions = *t.Options.DeepCopy()
}

// Promote copies the staged deployment to the current one unless paused.
// It reports whether it did.
func Promote(bd *fleetv1.BundleDeployment, paused bool) bool {
	if paused || bd.Spec.StagedDeploymentID == "" || bd.Spec.DeploymentID == bd.Spec.StagedDeploymentID {
		return false
	}
	bd.Spec.DeploymentID = bd.Spec.StagedDeploymentID
	bd.Spec.Options = *bd.Spec.StagedOptions.DeepCopy()
	return true
}

// Rollout stages every target and promotes staged deployments while the
// budgets allow, as Fleet's UpdatePartitions: targets are split into
// partitions processed in order; a target is promoted when neither the
// bundle's nor its partition's maxUnavailable is reached (or when it is
// unavailable anyway); after each partition, processing stops once more
// than maxUnavailablePartitions partitions are unavailable.
//
// A cluster is unavailable when its agent has not applied the current
// deploymentID or reports it not ready. A partition is unavailable when
// more of its clusters than its maxUnavailable are unavailable or not yet
// up to date with the staged deployment.
func Rollout(rs *fleetv1.RolloutStrategy, targets []*RolloutTarget) (RolloutStatus, error) {
	if rs == nil {
		rs = &fleetv1.RolloutStrategy{}
	}
	sorted := append([]*RolloutTarget(nil), targets...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].Cluster, sorted[j].Cluster
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	parts, err := partition(rs, sorted)
	if err != nil {
		return RolloutStatus{}, err
	}
	var st RolloutStatus
	if st.MaxUnavailable, err = Limit(len(sorted), rs.MaxUnavailable, &DefaultMaxUnavailable); err != nil {
		return RolloutStatus{}, fmt.Errorf("spec.rolloutStrategy.maxUnavailable: %w", err)
	}
	if st.MaxUnavailablePartitions, err = Limit(len(parts), rs.MaxUnavailablePartitions, &DefaultMaxUnavailablePartitions); err != nil {
		return RolloutStatus{}, fmt.Errorf("spec.rolloutStrategy.maxUnavailablePartitions: %w", err)
	}
	for _, t := range sorted {
		Stage(t)
		if countsUnavailable(t) {
			st.Unavailable++
		}
	}
	for i := range parts {
		p := &parts[i]
		for _, t := range p.targets {
			if t.Paused || t.Deployment.Spec.DeploymentID == t.Deployment.Spec.StagedDeploymentID {
				continue
			}
			unavailable := isUnavailable(t.Deployment)
			if (st.Unavailable < st.MaxUnavailable || unavailable) && (p.unavailable < p.maxUnavailable || unavailable) {
				if !unavailable && !t.Offline {
					st.Unavailable++
					p.unavailable++
				}
				Promote(t.Deployment, false)
			}
		}
		p.unavailable = 0
		for _, t := range p.targets {
			if !t.Offline && (!upToDate(t) || isUnavailable(t.Deployment)) {
				p.unavailable++
			}
		}
		if p.unavailable > p.maxUnavailable {
			st.UnavailablePartitions++
		}
		if st.UnavailablePartitions > st.MaxUnavailablePartitions {
			break
		}
	}
	for _, p := range parts {
		ps := fleetv1.PartitionStatus{Name: p.name, Count: int32(len(p.targets)), MaxUnavailable: int32(p.maxUnavailable)}
		for _, t := range p.targets {
			if countsUnavailable(t) {
				ps.Unavailable++
			}
			bundlestate.Add(&ps.Summary, "", bundlestate.State(t.Deployment), "")
		}
		ps.Summary.NonReadyResources = nil
		st.Partitions = append(st.Partitions, ps)
	}
	return st, nil
}

type rolloutPartition struct {
	name           string
	targets        []*RolloutTarget
	maxUnavailable int
	unavailable    int
}

func partition(rs *fleetv1.RolloutStrategy, targets []*RolloutTarget) ([]rolloutPartition, error) {
	newPartition := func(name string, ts []*RolloutTarget, maxUnavailable ...*intstr.IntOrString) (rolloutPartition, error) {
		limit, err := Limit(len(ts), append(maxUnavailable, &DefaultMaxUnavailable)...)
		if err != nil {
			return rolloutPartition{}, fmt.Errorf("partition %q: maxUnavailable: %w", name, err)
		}
		p := rolloutPartition{name: name, targets: ts, maxUnavailable: limit}
		for _, t := range ts {
			if countsUnavailable(t) {
				p.unavailable++
			}
		}
		return p, nil
	}
	var parts []rolloutPartition
	if len(rs.Partitions) > 0 {
		assigned := make([]bool, len(targets))
		for i := range rs.Partitions {
			def := &rs.Partitions[i]
			m, err := compile(FromPartition(def))
			if err != nil {
				return nil, fmt.Errorf("spec.rolloutStrategy.partitions[%d]: %w", i, err)
			}
			var ts []*RolloutTarget
			for j, t := range targets {
				if !assigned[j] && m.matches(t.Cluster, t.Groups) {
					assigned[j] = true
					ts = append(ts, t)
				}
			}
			name := def.Name
			if name == "" {
				name = fmt.Sprintf("partition%03d", i)
			}
			p, err := newPartition(name, ts, def.MaxUnavailable, rs.MaxUnavailable)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		}
		var rest []*RolloutTarget
		for j, t := range targets {
			if !assigned[j] {
				rest = append(rest, t)
			}
		}
		if len(rest) > 0 {
			p, err := newPartition(UnpartitionedName, rest, rs.MaxUnavailable)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		}
		return parts, nil
	}
	disabled := rs.AutoPartitionSize != nil && rs.AutoPartitionSize.Type == intstr.Int && rs.AutoPartitionSize.IntVal <= 0
	threshold := AutoPartitionThreshold
	if rs.AutoPartitionThreshold != nil {
		threshold = int(*rs.AutoPartitionThreshold)
	}
	if disabled || len(targets) < threshold {
		p, err := newPartition("All", targets, rs.MaxUnavailable)
		if err != nil {
			return nil, err
		}
		return []rolloutPartition{p}, nil
	}
	size, err := Limit(len(targets), rs.AutoPartitionSize, &DefaultAutoPartitionSize)
	if err != nil {
		return nil, fmt.Errorf("spec.rolloutStrategy.autoPartitionSize: %w", err)
	}
	for off := 0; off < len(targets); off += size {
		end := min(off+size, len(targets))
		p, err := newPartition(fmt.Sprintf("Partition %d - %d", off, end), targets[off:end], rs.MaxUnavailable)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func isUnavailable(bd *fleetv1.BundleDeployment) bool {
	if bd == nil {
		return false
	}
	return bd.Status.AppliedDeploymentID != bd.Spec.DeploymentID || !bd.Status.Ready
}

func countsUnavailable(t *RolloutTarget) bool {
	return !t.Offline && isUnavailable(t.Deployment)
}

func upToDate(t *RolloutTarget) bool {
	bd := t.Deployment
	return bd != nil && bd.Spec.StagedDeploymentID == t.DeploymentID && bd.Spec.DeploymentID == t.DeploymentID && bd.Status.AppliedDeploymentID == t.DeploymentID
}

// Limit resolves a count-or-percentage against count, as Fleet's limit: the
// first non-nil value is used; a percentage is rounded down but at least 1;
// an empty count gives 1.
func Limit(count int, vals ...*intstr.IntOrString) (int, error) {
	if count <= 0 {
		return 1, nil
	}
	var v *intstr.IntOrString
	for _, val := range vals {
		if val != nil {
			v = val
			break
		}
	}
	if v == nil {
		v = &DefaultMaxUnavailable
	}
	if v.Type == intstr.Int {
		return int(v.IntVal), nil
	}
	s := strings.TrimSpace(v.StrVal)
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	if !strings.HasSuffix(s, "%") {
		return 0, fmt.Errorf("%q is neither a number nor a percentage such as \"25%%\"", v.StrVal)
	}
	percent, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a valid percentage such as \"25%%\"", v.StrVal)
	}
	if percent <= 0 {
		return 1, nil
	}
	return max(1, int(float64(count)*percent)/100), nil
}
