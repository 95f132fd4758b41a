// Package apply puts the objects of a raw YAML or Kustomize bundle on a
// downstream cluster with server-side apply, keeps an inventory of what it
// applied so removed objects are pruned, and reports the readiness and drift
// of deployed objects.
package apply

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// FieldOwner is the server-side apply field manager of everything the agent
// applies.
const FieldOwner = "edgefleet-agent"

// Ref identifies one downstream object.
type Ref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// RefOf returns the reference of obj.
func RefOf(obj *unstructured.Unstructured) Ref {
	return Ref{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// IsCRD reports whether r is a CustomResourceDefinition.
func (r Ref) IsCRD() bool {
	return r.Kind == "CustomResourceDefinition" && strings.HasPrefix(r.APIVersion, "apiextensions.k8s.io/")
}

// String is "Kind namespace/name" (or "Kind name" for cluster-scoped
// objects), the form used in status messages.
func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// key ignores the API version so an object moving between versions of the
// same group is one object.
func (r Ref) key() string {
	return schema.FromAPIVersionAndKind(r.APIVersion, r.Kind).GroupKind().String() + "/" + r.Namespace + "/" + r.Name
}

// Unstructured returns an empty object carrying only r's identity.
func (r Ref) Unstructured() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(r.APIVersion)
	u.SetKind(r.Kind)
	u.SetNamespace(r.Namespace)
	u.SetName(r.Name)
	return u
}

// LabelValue is the BundleDeploymentLabel value for BundleDeployment ns/name:
// "<ns>.<name>", shortened with a hash suffix when longer than a label value
// may be.
func LabelValue(namespace, name string) string {
	v := namespace + "." + name
	if len(v) <= 63 {
		return v
	}
	return kubenames.Shorten(v, 63, kubenames.HashHex(v, 10), "-_.")
}

// Target is the BundleDeployment being applied, as far as the downstream
// objects need to know it.
type Target struct {
	Namespace    string
	Name         string
	DeploymentID string
	Options      fleetv1.BundleDeploymentOptions
	// DefaultNamespace is where namespaced objects without a namespace go.
	DefaultNamespace string
}

// Prepare returns copies of objs as they are applied for t: namespaced objects
// get t's default namespace when they have none, and every object carries the
// BundleDeployment label and the deployment ID annotation.
func Prepare(objs []*unstructured.Unstructured, t Target, mapper meta.RESTMapper) ([]*unstructured.Unstructured, error) {
	out, err := WithNamespaces(objs, t.DefaultNamespace, mapper)
	if err != nil {
		return nil, err
	}
	for _, o := range out {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[fleetv1.BundleDeploymentLabel] = LabelValue(t.Namespace, t.Name)
		o.SetLabels(labels)
		ann := o.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[fleetv1.DeploymentIDAnnotation] = t.DeploymentID
		o.SetAnnotations(ann)
	}
	return out, nil
}

// WithNamespaces returns copies of objs where namespaced objects without a
// namespace are in defaultNamespace and cluster-scoped ones have none, as
// the API server would place them. mapper decides which kinds are
// namespaced; kinds it does not know yet (custom resources whose CRD is in
// objs) follow that CRD's scope, or count as namespaced.
func WithNamespaces(objs []*unstructured.Unstructured, defaultNamespace string, mapper meta.RESTMapper) ([]*unstructured.Unstructured, error) {
	crdScopes := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if isCRD(o) {
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
			crdScopes[schema.GroupKind{Group: group, Kind: kind}] = scope != "Cluster"
		}
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		o = o.DeepCopy()
		if o.GetName() == "" || o.GetKind() == "" || o.GetAPIVersion() == "" {
			return nil, fmt.Errorf("object %s %q has no apiVersion, kind or name: every manifest needs all three", o.GetKind(), o.GetName())
		}
		gvk := o.GroupVersionKind()
		namespaced, known := crdScopes[gvk.GroupKind()]
		if !known {
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			switch {
			case err == nil:
				namespaced = m.Scope.Name() == meta.RESTScopeNameNamespace
			case meta.IsNoMatchError(err):
				namespaced = true
			default:
				return nil, fmt.Errorf("looking up %s: %w", gvk, err)
			}
		}
		switch {
		case !namespaced:
			o.SetNamespace("")
		case o.GetNamespace() == "":
			o.SetNamespace(defaultNamespace)
		}
		out = append(out, o)
	}
	return out, nil
}

func isCRD(o *unstructured.Unstructured) bool {
	return o.GetKind() == "CustomResourceDefinition" && strings.HasPrefix(o.GetAPIVersion(), "apiextensions.k8s.io/")
}

func isNamespace(o *unstructured.Unstructured) bool {
	return o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1"
}

// order returns objs with Namespaces first, then CRDs, then the rest in
// their given order.
func order(objs []*unstructured.Unstructured) (namespaces, crds, rest []*unstructured.Unstructured) {
	for _, o := range objs {
		switch {
		case isNamespace(o):
			namespaces = append(namespaces, o)
		case isCRD(o):
			crds = append(crds, o)
		default:
			rest = append(rest, o)
		}
	}
	return namespaces, crds, rest
}
