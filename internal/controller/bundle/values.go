package bundle

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/render"
)

// forCluster resolves the Helm values of a pair's options for its cluster
// (label references, ${ } templates, global.fleet.clusterLabels) here in
// the manager, as Fleet does in its controller (docs/adr/0009): the
// deployment ID then changes exactly when the cluster's labels,
// annotations or templateValues change what that cluster receives, and a
// label change redeploys that cluster only. Options without a helm section
// are returned unchanged.
func forCluster(opts fleetv1.BundleDeploymentOptions, cluster *fleetv1.Cluster) (fleetv1.BundleDeploymentOptions, error) {
	if opts.Helm == nil {
		return opts, nil
	}
	tc, err := render.ClusterTemplateContext(cluster)
	if err != nil {
		return opts, err
	}
	out, err := render.ResolveForCluster(opts, tc)
	if err != nil {
		return opts, fmt.Errorf("cluster %s/%s: %w", cluster.Namespace, cluster.Name, err)
	}
	return out, nil
}

// maxValueErrors bounds how many clusters' errors the Ready message lists.
const maxValueErrors = 3

// setValueErrors reports clusters whose values cannot be resolved: their
// deployments are left as they were until the bundle or the cluster
// changes. Not Stalled: a change to either can fix it.
func setValueErrors(st *fleetv1.BundleStatus, bundle *fleetv1.Bundle, errs []error) {
	if len(errs) == 0 {
		return
	}
	msgs := make([]string, 0, maxValueErrors)
	for _, err := range errs[:min(len(errs), maxValueErrors)] {
		msgs = append(msgs, err.Error())
	}
	more := ""
	if len(errs) > maxValueErrors {
		more = fmt.Sprintf(" (and %d more)", len(errs)-maxValueErrors)
	}
	msg := fmt.Sprintf("Helm values cannot be resolved for %d cluster(s), which keep their current deployment: %s%s. Fix the bundle's values or the clusters' labels/templateValues",
		len(errs), strings.Join(msgs, "; "), more)
	conditions.Set(&st.Conditions, fleetv1.ReadyCondition, metav1.ConditionFalse, fleetv1.InvalidSpecReason, msg, bundle.Generation)
}
