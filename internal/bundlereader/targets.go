package bundlereader

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// DefaultTarget is what a bundle without any target gets, as in Fleet.
var DefaultTarget = fleetv1.BundleTarget{Name: "default", ClusterGroup: "default"}

// composeTargets builds spec.targets and spec.targetRestrictions.
//
// The real targets (which clusters get the bundle) are fleet.yaml's
// overrideTargets, else the outer targets (GitRepo or --targets-file), else
// fleet.yaml's targets, else DefaultTarget. Customizations (which options a
// cluster gets) are targetCustomizations, preceded by fleet.yaml's targets
// when outer targets exist (Fleet puts them first, so the GitRepo's targets
// still restrict them). spec.targets is customizations followed by real
// targets; when there are customizations, targetRestrictions repeats the
// real targets, so the first len(targets)-len(targetRestrictions) entries
// are the customizations (Fleet's positional rule).
func composeTargets(fy *FleetYAML, outer []fleetv1.BundleTarget) ([]fleetv1.BundleTarget, []fleetv1.BundleTargetRestriction) {
	var custom, real []fleetv1.BundleTarget
	switch {
	case len(fy.OverrideTargets) > 0:
		for _, t := range fy.OverrideTargets {
			real = append(real, fleetv1.BundleTarget{
				Name:                 t.Name,
				ClusterName:          t.ClusterName,
				ClusterSelector:      t.ClusterSelector,
				ClusterGroup:         t.ClusterGroup,
				ClusterGroupSelector: t.ClusterGroupSelector,
			})
		}
		custom = append(custom, fy.Targets...)
	case len(outer) > 0:
		real = append(real, outer...)
		custom = append(custom, fy.Targets...)
	default:
		real = append(real, fy.Targets...)
	}
	custom = append(custom, fy.TargetCustomizations...)
	nameTargets(custom, 0)
	if len(real) == 0 {
		real = []fleetv1.BundleTarget{DefaultTarget}
	}
	nameTargets(real, len(custom))
	targets := append(custom, real...)
	if len(custom) == 0 {
		return targets, nil
	}
	restrictions := make([]fleetv1.BundleTargetRestriction, 0, len(real))
	for _, t := range real {
		restrictions = append(restrictions, fleetv1.BundleTargetRestriction{
			Name:                 t.Name,
			ClusterName:          t.ClusterName,
			ClusterSelector:      t.ClusterSelector,
			ClusterGroup:         t.ClusterGroup,
			ClusterGroupSelector: t.ClusterGroupSelector,
		})
	}
	return targets, restrictions
}

// fleetCLITargets is Fleet's `fleet apply`/`fleet test` composition:
// fleet.yaml targets and targetCustomizations, then the outer targets
// (overrideTargets replace them); DefaultTarget when nothing is left. It
// returns how many trailing entries are restrictions (the outer targets).
func fleetCLITargets(fy *FleetYAML, outer []fleetv1.BundleTarget) ([]fleetv1.BundleTarget, int) {
	var out []fleetv1.BundleTarget
	out = append(out, fy.Targets...)
	out = append(out, fy.TargetCustomizations...)
	if len(fy.OverrideTargets) > 0 {
		outer = nil
		for _, t := range fy.OverrideTargets {
			outer = append(outer, fleetv1.BundleTarget{Name: t.Name, ClusterName: t.ClusterName, ClusterSelector: t.ClusterSelector, ClusterGroup: t.ClusterGroup, ClusterGroupSelector: t.ClusterGroupSelector})
		}
	}
	out = append(out, outer...)
	if len(out) == 0 {
		return []fleetv1.BundleTarget{DefaultTarget}, 0
	}
	nameTargets(out, 0)
	return out, len(outer)
}

// nameTargets names unnamed targets target000, target001, ... by their
// position in spec.targets.
func nameTargets(ts []fleetv1.BundleTarget, offset int) {
	for i := range ts {
		if ts[i].Name == "" {
			ts[i].Name = fmt.Sprintf("target%03d", offset+i)
		}
	}
}

// TargetsFile is the --targets-file format: Fleet's, a map with targets (a
// bare list of targets is accepted too).
type TargetsFile struct {
	Targets []fleetv1.BundleTarget `json:"targets,omitempty"`
}

// ReadTargetsFile reads and strictly checks a targets file.
func ReadTargetsFile(file string) ([]fleetv1.BundleTarget, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading targets file: %w", err)
	}
	return ParseTargets(file, data)
}

// ParseTargets parses targets-file content; errors name file and line.
func ParseTargets(file string, data []byte) ([]fleetv1.BundleTarget, error) {
	root, err := parseYAMLDocument(file, data)
	if err != nil || root == nil {
		return nil, err
	}
	var tf TargetsFile
	if root.Kind == yaml.SequenceNode {
		if err := decodeStrict(file, root, &tf.Targets, nil); err != nil {
			return nil, err
		}
	} else if err := decodeStrict(file, root, &tf, nil); err != nil {
		return nil, err
	}
	for i, t := range tf.Targets {
		for key, sel := range map[string]*metav1.LabelSelector{"clusterSelector": t.ClusterSelector, "clusterGroupSelector": t.ClusterGroupSelector} {
			if sel == nil {
				continue
			}
			if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
				path := []any{"targets", i, key}
				if root.Kind == yaml.SequenceNode {
					path = path[1:]
				}
				return nil, yamlFileError(file, lineOf(root, path...), "%s: invalid label selector: %v", key, err)
			}
		}
	}
	return tf.Targets, nil
}
