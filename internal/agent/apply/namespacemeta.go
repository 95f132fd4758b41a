package apply

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// EnsureNamespaceMeta creates t's default namespace if needed and gives it
// namespaceLabels and namespaceAnnotations, by server-side apply as the
// agent's field owner: for Helm bundles, whose namespace Helm creates bare
// (raw and Kustomize bundles get them in Apply). Nothing is done when the
// options set neither.
func (a *Applier) EnsureNamespaceMeta(ctx context.Context, t Target) error {
	if t.DefaultNamespace == "" || (len(t.Options.NamespaceLabels) == 0 && len(t.Options.NamespaceAnnotations) == 0) {
		return nil
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(t.DefaultNamespace)
	return a.applyOne(ctx, withNamespaceMeta(ns, t))
}
