package agent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/targeting"
)

// defaultValuesKey is the key read when a valuesFrom reference names none, as in Fleet.
const defaultValuesKey = "values.yaml"

// resolveValuesFrom merges helm.valuesFrom — ConfigMaps and Secrets that live
// in the downstream cluster, so secrets never pass through the manager — over
// helm.values, in order (Fleet's precedence: values < valuesFiles <
// valuesFrom). They are read when the deployment is applied; a later change
// to them is picked up on the next deployment of the bundle.
func resolveValuesFrom(ctx context.Context, c client.Reader, opts fleetv1.BundleDeploymentOptions) (fleetv1.BundleDeploymentOptions, error) {
	if opts.Helm == nil || len(opts.Helm.ValuesFrom) == 0 {
		return opts, nil
	}
	defaultNS := opts.Namespace
	if defaultNS == "" {
		defaultNS = opts.DefaultNamespace
	}
	if defaultNS == "" {
		defaultNS = "default"
	}
	helm := *opts.Helm
	values := helm.Values
	for i, from := range helm.ValuesFrom {
		var kind, ns, name, key string
		var data map[string][]byte
		switch {
		case from.ConfigMapKeyRef != nil:
			kind, ns, name, key = "ConfigMap", from.ConfigMapKeyRef.Namespace, from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Key
			if ns == "" {
				ns = defaultNS
			}
			var cm corev1.ConfigMap
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
				return opts, fmt.Errorf("helm.valuesFrom[%d]: ConfigMap %s/%s: %w", i, ns, name, err)
			}
			data = map[string][]byte{}
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
		case from.SecretKeyRef != nil:
			kind, ns, name, key = "Secret", from.SecretKeyRef.Namespace, from.SecretKeyRef.Name, from.SecretKeyRef.Key
			if ns == "" {
				ns = defaultNS
			}
			var s corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
				return opts, fmt.Errorf("helm.valuesFrom[%d]: Secret %s/%s: %w", i, ns, name, err)
			}
			data = s.Data
		default:
			continue
		}
		if key == "" {
			key = defaultValuesKey
		}
		raw, ok := data[key]
		if !ok {
			return opts, fmt.Errorf("helm.valuesFrom[%d]: %s %s/%s has no key %q", i, kind, ns, name, key)
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			return opts, fmt.Errorf("helm.valuesFrom[%d]: %s %s/%s key %q is not a YAML map of values: %w", i, kind, ns, name, key, err)
		}
		js, err := yaml.Marshal(m)
		if err != nil {
			return opts, err
		}
		jsonRaw, err := yaml.YAMLToJSON(js)
		if err != nil {
			return opts, err
		}
		values = targeting.MergeValues(values, &runtime.RawExtension{Raw: jsonRaw})
	}
	helm.Values = values
	opts.Helm = &helm
	return opts, nil
}
