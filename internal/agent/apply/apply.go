package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CRDEstablishTimeout bounds the wait for a bundle's CRDs before its custom
// resources are applied.
const CRDEstablishTimeout = time.Minute

// Applier applies and deletes bundle objects on one downstream cluster.
type Applier struct {
	// Client talks to the downstream cluster. Its RESTMapper must discover
	// kinds added by CRDs (controller-runtime's default mapper does).
	Client client.Client
	// Agent is the agent's own identity, for its bookkeeping (the inventory
	// ConfigMaps in clusterjoin.SystemNamespace) and for reads that decide
	// nothing about rights (CRD established, namespace exists); nil means
	// Client. It differs from Client when Client impersonates a bundle's
	// serviceAccount.
	Agent client.Client
}

func (a *Applier) inventory() client.Client {
	if a.Agent != nil {
		return a.Agent
	}
	return a.Client
}

// Apply server-side applies objs for t: Namespaces first, then CRDs (waiting
// until they are established), then the rest in order. Namespaces that
// namespaced objects need are created, with t's namespace labels and
// annotations. Objects the previous inventory lists but objs no longer
// contain are deleted afterwards. objs must come from Prepare.
func (a *Applier) Apply(ctx context.Context, t Target, kind string, objs []*unstructured.Unstructured) error {
	old, err := ReadInventory(ctx, a.inventory(), t.Namespace, t.Name)
	if err != nil {
		return err
	}
	desired := make([]Ref, 0, len(objs))
	for _, o := range objs {
		desired = append(desired, RefOf(o))
	}
	// Record the union before applying, so objects applied by a deployment
	// that fails half-way are still pruned or deleted later.
	pending := &Inventory{Kind: kind, Namespace: t.DefaultNamespace, DeploymentID: t.DeploymentID, Objects: union(refsOf(old), desired)}
	if err := WriteInventory(ctx, a.inventory(), t.Namespace, t.Name, pending); err != nil {
		return err
	}
	namespaces, crds, rest := order(objs)
	for _, o := range namespaces {
		if err := a.applyOne(ctx, withNamespaceMeta(o, t)); err != nil {
			return err
		}
	}
	if err := a.ensureNamespaces(ctx, t, objs); err != nil {
		return err
	}
	for _, o := range crds {
		if err := a.applyOne(ctx, o); err != nil {
			return err
		}
	}
	for _, o := range crds {
		if err := a.waitEstablished(ctx, o.GetName()); err != nil {
			return err
		}
	}
	for _, o := range rest {
		if err := a.applyOne(ctx, o); err != nil {
			return err
		}
	}
	if err := a.deleteRefs(ctx, WithoutCRDs(difference(refsOf(old), desired), t.Options.DeleteCRDResources)); err != nil {
		return fmt.Errorf("pruning objects removed from the bundle: %w", err)
	}
	return WriteInventory(ctx, a.inventory(), t.Namespace, t.Name, &Inventory{Kind: kind, Namespace: t.DefaultNamespace, DeploymentID: t.DeploymentID, Objects: desired})
}

// Delete deletes everything inv lists, then the inventory itself. With keep
// the objects stay and only the inventory goes. CustomResourceDefinitions
// stay unless deleteCRDs (the bundle's deleteCRDResources): deleting one
// deletes every custom resource of its kind in the cluster, not only the
// bundle's.
func (a *Applier) Delete(ctx context.Context, namespace, name string, inv *Inventory, keep, deleteCRDs bool) error {
	if inv != nil && !keep {
		if err := a.deleteRefs(ctx, WithoutCRDs(inv.Objects, deleteCRDs)); err != nil {
			return err
		}
	}
	return DeleteInventory(ctx, a.inventory(), namespace, name)
}

// WithoutCRDs returns refs without CustomResourceDefinitions, unless
// deleteCRDs.
func WithoutCRDs(refs []Ref, deleteCRDs bool) []Ref {
	if deleteCRDs {
		return refs
	}
	out := make([]Ref, 0, len(refs))
	for _, r := range refs {
		if !r.IsCRD() {
			out = append(out, r)
		}
	}
	return out
}

func (a *Applier) applyOne(ctx context.Context, o *unstructured.Unstructured) error {
	ctrl.LoggerFrom(ctx).V(4).Info("Applying object", "object", RefOf(o).String())
	err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner(FieldOwner), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("applying %s: %w", RefOf(o), err)
	}
	return nil
}

// ensureNamespaces creates the namespaces that namespaced objects need and
// the bundle does not contain.
func (a *Applier) ensureNamespaces(ctx context.Context, t Target, objs []*unstructured.Unstructured) error {
	inBundle := map[string]bool{}
	for _, o := range objs {
		if isNamespace(o) {
			inBundle[o.GetName()] = true
		}
	}
	needed := map[string]bool{}
	if t.DefaultNamespace != "" {
		needed[t.DefaultNamespace] = true
	}
	for _, o := range objs {
		if o.GetNamespace() != "" {
			needed[o.GetNamespace()] = true
		}
	}
	for ns := range needed {
		if inBundle[ns] {
			continue
		}
		o := &unstructured.Unstructured{}
		o.SetAPIVersion("v1")
		o.SetKind("Namespace")
		o.SetName(ns)
		if ns != t.DefaultNamespace {
			// Only the bundle's own namespace takes its labels; others may
			// be shared with unrelated workloads. Create them if missing.
			err := a.inventory().Get(ctx, client.ObjectKey{Name: ns}, o)
			if err == nil {
				continue
			}
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("reading namespace %s: %w", ns, err)
			}
			if err := a.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating namespace %s: %w", ns, err)
			}
			continue
		}
		if err := a.applyOne(ctx, withNamespaceMeta(o, t)); err != nil {
			return err
		}
	}
	return nil
}

// withNamespaceMeta adds t's namespace labels and annotations to the
// bundle's default namespace object.
func withNamespaceMeta(ns *unstructured.Unstructured, t Target) *unstructured.Unstructured {
	if ns.GetName() != t.DefaultNamespace || (len(t.Options.NamespaceLabels) == 0 && len(t.Options.NamespaceAnnotations) == 0) {
		return ns
	}
	ns = ns.DeepCopy()
	labels := ns.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, t.Options.NamespaceLabels)
	ns.SetLabels(labels)
	ann := ns.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, t.Options.NamespaceAnnotations)
	ns.SetAnnotations(ann)
	return ns
}

func (a *Applier) waitEstablished(ctx context.Context, name string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, CRDEstablishTimeout, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := a.inventory().Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			last = err.Error()
			return false, nil
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
			if c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionFalse {
				last = c.Message
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CustomResourceDefinition %s is not established after %s (%s): its custom resources cannot be applied", name, CRDEstablishTimeout, last)
	}
	return nil
}

// deleteRefs deletes refs in reverse order (custom resources before their
// CRDs, objects before their namespaces).
func (a *Applier) deleteRefs(ctx context.Context, refs []Ref) error {
	var errs []error
	for i := len(refs) - 1; i >= 0; i-- {
		r := refs[i]
		ctrl.LoggerFrom(ctx).V(4).Info("Deleting object", "object", r.String())
		err := a.Client.Delete(ctx, r.Unstructured(), client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

func refsOf(inv *Inventory) []Ref {
	if inv == nil {
		return nil
	}
	return inv.Objects
}

func union(a, b []Ref) []Ref {
	seen := map[string]bool{}
	var out []Ref
	for _, r := range append(append([]Ref{}, a...), b...) {
		if !seen[r.key()] {
			seen[r.key()] = true
			out = append(out, r)
		}
	}
	return out
}

// difference returns the refs of a that are not in b.
func difference(a, b []Ref) []Ref {
	in := map[string]bool{}
	for _, r := range b {
		in[r.key()] = true
	}
	var out []Ref
	for _, r := range a {
		if !in[r.key()] {
			out = append(out, r)
		}
	}
	return out
}

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}
