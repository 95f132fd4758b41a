package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// dependenciesPending returns why bd has to wait for its dependsOn entries,
// or "" when all are satisfied. Dependencies are BundleDeployments of the
// same cluster (namespace), matched by bundle name or by label selector.
func (r *reconciler) dependenciesPending(ctx context.Context, bd *fleetv1.BundleDeployment) (string, error) {
	if len(bd.Spec.DependsOn) == 0 {
		return "", nil
	}
	var waiting []string
	for _, dep := range bd.Spec.DependsOn {
		sel, err := dependencySelector(dep)
		if err != nil {
			return "", err
		}
		list := &fleetv1.BundleDeploymentList{}
		if err := r.manager.List(ctx, list, client.InNamespace(bd.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return "", fmt.Errorf("listing dependencies: %w", err)
		}
		waiting = append(waiting, unmetDependency(dep, list.Items)...)
	}
	if len(waiting) == 0 {
		return "", nil
	}
	return "waiting for dependencies: " + strings.Join(waiting, ", "), nil
}

func dependencySelector(dep fleetv1.BundleRef) (labels.Selector, error) {
	if dep.Name != "" {
		return labels.SelectorFromSet(labels.Set{fleetv1.BundleNameLabel: dep.Name}), nil
	}
	if dep.Selector == nil {
		return nil, fmt.Errorf("a dependsOn entry has neither name nor selector: set one of them in the bundle's dependsOn")
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Selector)
	if err != nil {
		return nil, fmt.Errorf("dependsOn selector is invalid: %w", err)
	}
	return sel, nil
}

// unmetDependency describes the deployments matching dep that are not in an
// accepted state (default Ready); a named dependency that does not exist yet
// is unmet too.
func unmetDependency(dep fleetv1.BundleRef, matched []fleetv1.BundleDeployment) []string {
	accepted := dep.AcceptedStates
	if len(accepted) == 0 {
		accepted = []fleetv1.BundleState{fleetv1.Ready}
	}
	if len(matched) == 0 && dep.Name != "" {
		return []string{fmt.Sprintf("bundle %s has no deployment on this cluster yet", dep.Name)}
	}
	var out []string
	for i := range matched {
		if st := State(&matched[i]); !slices.Contains(accepted, st) {
			out = append(out, fmt.Sprintf("%s is %s", bundleOf(&matched[i]), st))
		}
	}
	return out
}

func bundleOf(bd *fleetv1.BundleDeployment) string {
	if n := bd.Labels[fleetv1.BundleNameLabel]; n != "" {
		return "bundle " + n
	}
	return "bundledeployment " + bd.Name
}
