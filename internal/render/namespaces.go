package render

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ClusterScopedKinds are the kinds treated as cluster-scoped when no
// TemplateContext.IsClusterScoped is given (rendering needs no cluster).
// Kinds not listed are namespaced, unless a CustomResourceDefinition in the
// same bundle declares them cluster-scoped.
var ClusterScopedKinds = map[string]bool{
	"APIService":                       true,
	"CertificateSigningRequest":        true,
	"ClusterRole":                      true,
	"ClusterRoleBinding":               true,
	"ComponentStatus":                  true,
	"CSIDriver":                        true,
	"CSINode":                          true,
	"CustomResourceDefinition":         true,
	"DeviceClass":                      true,
	"FlowSchema":                       true,
	"IngressClass":                     true,
	"MutatingAdmissionPolicy":          true,
	"MutatingAdmissionPolicyBinding":   true,
	"MutatingWebhookConfiguration":     true,
	"Namespace":                        true,
	"Node":                             true,
	"PersistentVolume":                 true,
	"PriorityClass":                    true,
	"PriorityLevelConfiguration":       true,
	"RuntimeClass":                     true,
	"StorageClass":                     true,
	"ValidatingAdmissionPolicy":        true,
	"ValidatingAdmissionPolicyBinding": true,
	"ValidatingWebhookConfiguration":   true,
	"VolumeAttachment":                 true,
	"VolumeSnapshotClass":              true,
	"VolumeSnapshotContent":            true,
}

// scoper answers whether a kind is cluster-scoped for one rendering.
type scoper struct {
	custom func(schema.GroupVersionKind) bool
	// crds are group/kind → cluster-scoped, from CRDs in the bundle itself.
	crds map[schema.GroupKind]bool
}

func newScoper(custom func(schema.GroupVersionKind) bool, objs []*unstructured.Unstructured) *scoper {
	s := &scoper{custom: custom, crds: map[schema.GroupKind]bool{}}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		if kind != "" {
			s.crds[schema.GroupKind{Group: group, Kind: kind}] = scope == "Cluster"
		}
	}
	return s
}

func (s *scoper) clusterScoped(gvk schema.GroupVersionKind) bool {
	if scoped, ok := s.crds[gvk.GroupKind()]; ok {
		return scoped
	}
	if s.custom != nil {
		return s.custom(gvk)
	}
	return ClusterScopedKinds[gvk.Kind]
}

// setNamespaces applies Fleet's namespace rules: namespaced objects without
// a namespace get ns; with a forced namespace every namespaced object is
// moved into it and a cluster-scoped object is an error.
func setNamespaces(objs []*unstructured.Unstructured, srcs []source, ns string, forced bool, s *scoper) error {
	for i, o := range objs {
		if s.clusterScoped(o.GroupVersionKind()) {
			if forced {
				return &Error{File: srcs[i].file, Line: srcs[i].line, Err: fmt.Errorf(
					"%s %q is cluster-scoped, but options.namespace forces every object into namespace %q: use defaultNamespace instead of namespace, or move the object to another bundle",
					o.GetKind(), o.GetName(), ns)}
			}
			if o.GetNamespace() != "" {
				o.SetNamespace("")
			}
			continue
		}
		if forced || o.GetNamespace() == "" {
			o.SetNamespace(ns)
		}
	}
	return nil
}

// Apply order: namespaces and CRDs first so later objects can land in them,
// then cluster-scoped objects (RBAC, storage classes), then namespaced ones,
// and webhooks and API services last because they point at Services the
// bundle itself may only just have created.
const (
	groupNamespace = iota
	groupCRD
	groupClusterScoped
	groupNamespaced
	groupLast
)

// kindRank orders kinds within a group as Helm's install order does, so
// e.g. ServiceAccounts and ConfigMaps exist before the workloads using them.
var kindRank = func() map[string]int {
	order := []string{
		"PriorityClass", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodDisruptionBudget",
		"ServiceAccount", "Secret", "ConfigMap", "StorageClass", "PersistentVolume",
		"PersistentVolumeClaim", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
		"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
		"APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
	}
	m := make(map[string]int, len(order))
	for i, k := range order {
		m[k] = i
	}
	return m
}()

func applyGroup(o *unstructured.Unstructured, s *scoper) int {
	switch o.GetKind() {
	case "Namespace":
		return groupNamespace
	case "CustomResourceDefinition":
		return groupCRD
	case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService":
		return groupLast
	}
	if s.clusterScoped(o.GroupVersionKind()) {
		return groupClusterScoped
	}
	return groupNamespaced
}

// sortObjects sorts objs (and srcs alongside) into apply order; ties are
// broken by kind, namespace, name and apiVersion so output is deterministic.
func sortObjects(objs []*unstructured.Unstructured, srcs []source, s *scoper) {
	type entry struct {
		o     *unstructured.Unstructured
		src   source
		group int
		rank  int
	}
	es := make([]entry, len(objs))
	for i, o := range objs {
		rank, ok := kindRank[o.GetKind()]
		if !ok {
			rank = len(kindRank)
		}
		es[i] = entry{o: o, src: srcs[i], group: applyGroup(o, s), rank: rank}
	}
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.group != b.group {
			return a.group < b.group
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if a.o.GetKind() != b.o.GetKind() {
			return a.o.GetKind() < b.o.GetKind()
		}
		if a.o.GetNamespace() != b.o.GetNamespace() {
			return a.o.GetNamespace() < b.o.GetNamespace()
		}
		if a.o.GetName() != b.o.GetName() {
			return a.o.GetName() < b.o.GetName()
		}
		return a.o.GetAPIVersion() < b.o.GetAPIVersion()
	})
	for i, e := range es {
		objs[i], srcs[i] = e.o, e.src
	}
}
