package targeting

import (
	"encoding/json"
	"maps"

	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// ClearValue in a customization's namespace, defaultNamespace or
// serviceAccount clears the value set on the bundle.
const ClearValue = "-"

// Merge returns base with custom (a target's or customization's options)
// merged over it, as Fleet's options.Merge: scalars are replaced when set
// ("-" clears namespace, defaultNamespace and serviceAccount), Helm values
// are deep-merged, boolean flags are ORed, comparePatches and valuesFrom are
// merged by key (custom wins), namespace labels and annotations are merged
// by key and YAML overlays are appended. Neither input is modified.
func Merge(base, custom fleetv1.BundleDeploymentOptions) fleetv1.BundleDeploymentOptions {
	result := *base.DeepCopy()
	custom = *custom.DeepCopy()
	mergeScalar(&result.DefaultNamespace, custom.DefaultNamespace)
	mergeScalar(&result.Namespace, custom.Namespace)
	mergeScalar(&result.ServiceAccount, custom.ServiceAccount)
	result.KeepResources = result.KeepResources || custom.KeepResources
	result.DeleteNamespace = result.DeleteNamespace || custom.DeleteNamespace
	result.DeleteCRDResources = result.DeleteCRDResources || custom.DeleteCRDResources
	if len(custom.NamespaceLabels) > 0 {
		if result.NamespaceLabels == nil {
			result.NamespaceLabels = map[string]string{}
		}
		maps.Copy(result.NamespaceLabels, custom.NamespaceLabels)
	}
	if len(custom.NamespaceAnnotations) > 0 {
		if result.NamespaceAnnotations == nil {
			result.NamespaceAnnotations = map[string]string{}
		}
		maps.Copy(result.NamespaceAnnotations, custom.NamespaceAnnotations)
	}
	if custom.Helm != nil {
		if result.Helm == nil {
			result.Helm = &fleetv1.HelmOptions{}
		}
		mergeHelm(result.Helm, custom.Helm)
	}
	if custom.Kustomize != nil {
		if result.Kustomize == nil {
			result.Kustomize = &fleetv1.KustomizeOptions{}
		}
		if custom.Kustomize.Dir != "" {
			result.Kustomize.Dir = custom.Kustomize.Dir
		}
	}
	if custom.YAML != nil {
		if result.YAML == nil {
			result.YAML = &fleetv1.YAMLOptions{}
		}
		result.YAML.Overlays = append(result.YAML.Overlays, custom.YAML.Overlays...)
	}
	if custom.Diff != nil {
		if result.Diff == nil {
			result.Diff = &fleetv1.DiffOptions{}
		}
		result.Diff.ComparePatches = mergeByKey(result.Diff.ComparePatches, custom.Diff.ComparePatches, comparePatchKey)
	}
	if custom.CorrectDrift != nil {
		result.CorrectDrift = custom.CorrectDrift
	}
	if custom.Ignore != nil {
		result.Ignore = custom.Ignore
	}
	result.CreateNamespace = result.CreateNamespace || custom.CreateNamespace
	result.DownstreamResources = mergeByKey(result.DownstreamResources, custom.DownstreamResources, func(d fleetv1.DownstreamResource) string { return d.Kind + "/" + d.Name })
	return result
}

func mergeScalar(dst *string, custom string) {
	switch custom {
	case "":
	case ClearValue:
		*dst = ""
	default:
		*dst = custom
	}
}

func mergeHelm(result, custom *fleetv1.HelmOptions) {
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&result.Chart, custom.Chart}, {&result.Repo, custom.Repo},
		{&result.Version, custom.Version}, {&result.ReleaseName, custom.ReleaseName},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	if custom.TimeoutSeconds > 0 {
		result.TimeoutSeconds = custom.TimeoutSeconds
	}
	if custom.MaxHistory > 0 {
		result.MaxHistory = custom.MaxHistory
	}
	if len(custom.ValuesFiles) > 0 {
		result.ValuesFiles = custom.ValuesFiles
	}
	result.Values = MergeValues(result.Values, custom.Values)
	if len(custom.ValuesFrom) > 0 {
		result.ValuesFrom = mergeByKey(result.ValuesFrom, custom.ValuesFrom, valuesFromKey)
	}
	result.Force = result.Force || custom.Force
	result.TakeOwnership = result.TakeOwnership || custom.TakeOwnership
	result.Atomic = result.Atomic || custom.Atomic
	result.WaitForJobs = result.WaitForJobs || custom.WaitForJobs
	result.DisablePreProcess = result.DisablePreProcess || custom.DisablePreProcess
	result.SkipSchemaValidation = result.SkipSchemaValidation || custom.SkipSchemaValidation
	result.DisableDNS = result.DisableDNS || custom.DisableDNS
	result.DisableDependencyUpdate = result.DisableDependencyUpdate || custom.DisableDependencyUpdate
	if len(custom.TemplateValues) > 0 {
		if result.TemplateValues == nil {
			result.TemplateValues = map[string]string{}
		}
		maps.Copy(result.TemplateValues, custom.TemplateValues)
	}
}

// MergeValues deep-merges Helm values: maps merge key by key, recursively;
// any other custom value replaces the base value. When either side is not a
// JSON object the custom side wins.
func MergeValues(base, custom *runtime.RawExtension) *runtime.RawExtension {
	if custom == nil || len(custom.Raw) == 0 {
		return base
	}
	if base == nil || len(base.Raw) == 0 {
		return custom
	}
	var b, c map[string]any
	if json.Unmarshal(base.Raw, &b) != nil || json.Unmarshal(custom.Raw, &c) != nil || b == nil || c == nil {
		return custom
	}
	raw, err := json.Marshal(mergeMaps(b, c))
	if err != nil {
		return custom
	}
	return &runtime.RawExtension{Raw: raw}
}

func mergeMaps(base, custom map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, cv := range custom {
		bm, bok := out[k].(map[string]any)
		cm, cok := cv.(map[string]any)
		if bok && cok {
			out[k] = mergeMaps(bm, cm)
			continue
		}
		out[k] = cv
	}
	return out
}

// mergeByKey keeps base's order, replaces entries whose key custom also has
// and appends custom's new entries. Entries with an empty key are always
// appended.
func mergeByKey[T any](base, custom []T, key func(T) string) []T {
	if len(custom) == 0 {
		return base
	}
	idx := map[string]int{}
	out := append([]T(nil), base...)
	for i, b := range out {
		if k := key(b); k != "" {
			idx[k] = i
		}
	}
	for _, c := range custom {
		k := key(c)
		if i, ok := idx[k]; ok && k != "" {
			out[i] = c
			continue
		}
		if k != "" {
			idx[k] = len(out)
		}
		out = append(out, c)
	}
	return out
}

func comparePatchKey(p fleetv1.ComparePatch) string {
	return p.APIVersion + "|" + p.Kind + "|" + p.Namespace + "|" + p.Name
}

func valuesFromKey(v fleetv1.ValueFrom) string {
	switch {
	case v.ConfigMapKeyRef != nil:
		return "configmap|" + v.ConfigMapKeyRef.Namespace + "|" + v.ConfigMapKeyRef.Name + "|" + v.ConfigMapKeyRef.Key
	case v.SecretKeyRef != nil:
		return "secret|" + v.SecretKeyRef.Namespace + "|" + v.SecretKeyRef.Name + "|" + v.SecretKeyRef.Key
	}
	return ""
}
