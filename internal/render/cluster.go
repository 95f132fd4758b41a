package render

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// ResolveForCluster resolves the Helm values of opts for the cluster tc
// describes, as Fleet does in its controller: label references, ${ }
// templates (unless helm.disablePreProcess) and global.fleet.clusterLabels,
// through the same code Render runs for `edgefleet test`. The result has
// helm.valuesResolved set, so the agent deploys the values as they are; its
// deployment ID therefore changes exactly when the cluster's labels,
// annotations or templateValues change what that cluster receives. Options
// without a helm section are returned unchanged. Errors are *Error.
func ResolveForCluster(opts fleetv1.BundleDeploymentOptions, tc TemplateContext) (fleetv1.BundleDeploymentOptions, error) {
	if opts.Helm == nil {
		return opts, nil
	}
	out := *opts.DeepCopy()
	out.Helm.ValuesResolved = false // a Bundle cannot claim its values are resolved
	values, err := helmValues(nil, "", out.Helm, tc)
	if err != nil {
		return opts, err
	}
	raw, err := json.Marshal(values)
	if err != nil {
		return opts, fmt.Errorf("encoding resolved Helm values: %w", err)
	}
	out.Helm.Values = &runtime.RawExtension{Raw: raw}
	out.Helm.ValuesResolved = true
	return out, nil
}

// ClusterTemplateContext is what templates see of cluster: its name and
// namespace, labels, annotations and spec.templateValues (.ClusterValues).
// A templateValues that is not a map is an error naming the cluster.
func ClusterTemplateContext(cluster *fleetv1.Cluster) (TemplateContext, error) {
	tc := TemplateContext{
		ClusterName:        cluster.Name,
		ClusterNamespace:   cluster.Namespace,
		ClusterLabels:      cluster.Labels,
		ClusterAnnotations: cluster.Annotations,
	}
	if tv := cluster.Spec.TemplateValues; tv != nil && len(tv.Raw) > 0 {
		var v any
		if err := json.Unmarshal(tv.Raw, &v); err != nil {
			return tc, fmt.Errorf("cluster %s/%s: spec.templateValues: %w", cluster.Namespace, cluster.Name, err)
		}
		switch m := v.(type) {
		case nil:
		case map[string]any:
			tc.ClusterValues = m
		default:
			return tc, fmt.Errorf("cluster %s/%s: spec.templateValues must be a map (key: value), not a %s", cluster.Namespace, cluster.Name, typeName(v))
		}
	}
	return tc, nil
}
