package bundle

import (
	"context"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// A Bundle targets the Clusters of its own namespace, and those of other
// namespaces only through a BundleNamespaceMapping in the bundle's
// namespace whose bundleSelector selects the bundle and whose
// namespaceSelector selects the cluster's namespace (Fleet's rule).
// Mappings are few and read from the cache, so this adds O(mappings) to a
// bundle event (plus the mapped namespaces' clusters, which it targets
// anyway) and to a cluster event, never bundles × clusters.

// mappingSelectors parses a mapping's selectors; unset selects nothing.
func mappingSelectors(m *fleetv1.BundleNamespaceMapping) (bundles, namespaces labels.Selector, err error) {
	if m.BundleSelector == nil || m.NamespaceSelector == nil {
		return labels.Nothing(), labels.Nothing(), nil
	}
	if bundles, err = metav1.LabelSelectorAsSelector(m.BundleSelector); err != nil {
		return nil, nil, fmt.Errorf("BundleNamespaceMapping %s/%s: bundleSelector: %w", m.Namespace, m.Name, err)
	}
	if namespaces, err = metav1.LabelSelectorAsSelector(m.NamespaceSelector); err != nil {
		return nil, nil, fmt.Errorf("BundleNamespaceMapping %s/%s: namespaceSelector: %w", m.Namespace, m.Name, err)
	}
	return bundles, namespaces, nil
}

// clusterNamespaces are the namespaces whose Clusters bundle may target:
// its own first, then those its namespace's mappings give it, sorted.
func (r *Reconciler) clusterNamespaces(ctx context.Context, bundle *fleetv1.Bundle) ([]string, error) {
	var mappings fleetv1.BundleNamespaceMappingList
	if err := r.Client.List(ctx, &mappings, client.InNamespace(bundle.Namespace)); err != nil {
		return nil, fmt.Errorf("listing bundle namespace mappings: %w", err)
	}
	var selectors []labels.Selector
	for i := range mappings.Items {
		bs, ns, err := mappingSelectors(&mappings.Items[i])
		if err != nil {
			logf.FromContext(ctx).Info("Ignoring an invalid BundleNamespaceMapping", "error", err.Error())
			continue
		}
		if bs.Matches(labels.Set(bundle.Labels)) {
			selectors = append(selectors, ns)
		}
	}
	out := []string{bundle.Namespace}
	if len(selectors) == 0 {
		return out, nil
	}
	var nss corev1.NamespaceList
	if err := r.Client.List(ctx, &nss); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	for _, ns := range nss.Items {
		if ns.Name == bundle.Namespace {
			continue
		}
		if slices.ContainsFunc(selectors, func(s labels.Selector) bool { return s.Matches(labels.Set(ns.Labels)) }) {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out[1:])
	return out, nil
}

// mappedBundles are the Bundles of other namespaces that mappings let
// target the Clusters of namespace.
func (r *Reconciler) mappedBundles(ctx context.Context, namespace string) ([]fleetv1.Bundle, error) {
	var mappings fleetv1.BundleNamespaceMappingList
	if err := r.Client.List(ctx, &mappings); err != nil {
		return nil, fmt.Errorf("listing bundle namespace mappings: %w", err)
	}
	if len(mappings.Items) == 0 {
		return nil, nil
	}
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	var out []fleetv1.Bundle
	seen := map[types.NamespacedName]bool{}
	for i := range mappings.Items {
		m := &mappings.Items[i]
		if m.Namespace == namespace {
			continue
		}
		bs, nsSel, err := mappingSelectors(m)
		if err != nil || !nsSel.Matches(labels.Set(ns.Labels)) {
			continue
		}
		var list fleetv1.BundleList
		if err := r.Client.List(ctx, &list, client.InNamespace(m.Namespace), client.MatchingLabelsSelector{Selector: bs}); err != nil {
			return nil, fmt.Errorf("listing bundles of %s: %w", m.Namespace, err)
		}
		for _, b := range list.Items {
			key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
			if !seen[key] {
				seen[key] = true
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// mappingHandler recomputes the bundles a mapping selects, before and after
// a change, so pairs it adds are created and pairs it removes deleted.
func (r *Reconciler) mappingHandler() handler.EventHandler {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		seen := map[types.NamespacedName]bool{}
		for _, o := range objs {
			m, ok := o.(*fleetv1.BundleNamespaceMapping)
			if !ok || m.BundleSelector == nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(m.BundleSelector)
			if err != nil {
				continue
			}
			var list fleetv1.BundleList
			if err := r.Client.List(ctx, &list, client.InNamespace(m.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
				logf.FromContext(ctx).Error(err, "Listing bundles for a changed BundleNamespaceMapping")
				continue
			}
			for _, b := range list.Items {
				key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
				if !seen[key] {
					seen[key] = true
					q.Add(reconcile.Request{NamespacedName: key})
				}
			}
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
	}
}

// namespaceHandler recomputes the bundles of the mappings whose
// namespaceSelector selects a namespace before or after its labels
// changed.
func (r *Reconciler) namespaceHandler() handler.EventHandler {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], sets ...labels.Set) {
		var mappings fleetv1.BundleNamespaceMappingList
		if err := r.Client.List(ctx, &mappings); err != nil {
			logf.FromContext(ctx).Error(err, "Listing bundle namespace mappings for a changed namespace")
			return
		}
		var hit []client.Object
		for i := range mappings.Items {
			m := &mappings.Items[i]
			_, nsSel, err := mappingSelectors(m)
			if err != nil {
				continue
			}
			if slices.ContainsFunc(sets, func(s labels.Set) bool { return nsSel.Matches(s) }) {
				hit = append(hit, m)
			}
		}
		for _, m := range hit {
			r.mappingHandler().Update(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: m, ObjectNew: m}, q)
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		// Creations: at start-up every bundle is reconciled anyway, and a
		// new namespace has no clusters yet (their creation enqueues them).
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) {
				return
			}
			enqueue(ctx, q, labels.Set(e.ObjectOld.GetLabels()), labels.Set(e.ObjectNew.GetLabels()))
		},
	}
}
