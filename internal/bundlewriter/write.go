// Package bundlewriter writes the bundles of one bundle set (`edgefleet apply
// NAME`, or one GitRepo): it stores their content, creates or updates the
// Bundles and prunes the set's Bundles that the source no longer produces.
// Both `edgefleet apply` and the GitRepo controller use it, so a directory
// behaves the same whichever way it reaches the manager.
package bundlewriter

import (
	"context"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bundlereader"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/jsonvalue"
)

// Action is what Write did to one bundle.
type Action string

// Actions, worded as kubectl prints them.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Pruned     Action = "pruned"
)

// Change is one bundle Write touched (or left alone).
type Change struct {
	Name   string
	Action Action
}

// Options shape one Write.
type Options struct {
	// NoPrune keeps the set's bundles that bundles does not contain, e.g.
	// when some of the source could not be read and its bundles must stay.
	NoPrune bool
	// OnChange, when set, is called for every change as it happens, so a
	// caller can report progress even if a later write fails.
	OnChange func(Change)
}

// Write stores the bundles' content, creates or updates them in namespace
// and prunes the bundles labelled BundleSetLabel=set that are not among
// them. Conflicts (a bundle of that name belonging to another set) are
// checked before the first write. A Bundle without a set label is adopted.
func Write(ctx context.Context, c client.Client, namespace, set string, bundles []*bundlereader.Bundle, opts Options) ([]Change, error) {
	var changes []Change
	record := func(name string, a Action) {
		ch := Change{Name: name, Action: a}
		changes = append(changes, ch)
		if opts.OnChange != nil {
			opts.OnChange(ch)
		}
	}

	var list fleetv1.BundleList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{fleetv1.BundleSetLabel: set}); err != nil {
		return nil, fmt.Errorf("listing bundles of %s in %s: %w", set, namespace, err)
	}
	existing := map[string]*fleetv1.Bundle{}
	for i := range list.Items {
		existing[list.Items[i].Name] = &list.Items[i]
	}
	for _, b := range bundles {
		if _, ok := existing[b.Bundle.Name]; ok {
			continue
		}
		var other fleetv1.Bundle
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: b.Bundle.Name}, &other)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading bundle %s: %w", b.Bundle.Name, err)
		case other.Labels[fleetv1.BundleSetLabel] != "":
			return nil, fmt.Errorf("bundle %s/%s already exists and belongs to %q (label %s): set another name in %s/fleet.yaml",
				namespace, b.Bundle.Name, other.Labels[fleetv1.BundleSetLabel], fleetv1.BundleSetLabel, b.Dir)
		default:
			// A bundle of no set is adopted.
			existing[b.Bundle.Name] = &other
		}
	}

	desired := make([]*fleetv1.Bundle, 0, len(bundles))
	for _, b := range bundles {
		id, err := content.Store(ctx, c, b.Manifest)
		if err != nil {
			return nil, fmt.Errorf("storing the content of bundle %s: %w", b.Bundle.Name, err)
		}
		d := b.Bundle.DeepCopy()
		d.Namespace = namespace
		d.Spec.Resources = nil
		d.Spec.ContentsID = id
		desired = append(desired, d)
	}

	produced := map[string]bool{}
	for _, d := range desired {
		produced[d.Name] = true
		cur, ok := existing[d.Name]
		if !ok {
			if err := c.Create(ctx, d); err != nil {
				return changes, fmt.Errorf("creating bundle %s: %w", d.Name, err)
			}
			record(d.Name, Created)
			continue
		}
		warnings := d.Annotations[fleetv1.FleetYAMLWarningsAnnotation]
		if jsonvalue.Equal(cur.Spec, d.Spec) && reflect.DeepEqual(cur.Labels, d.Labels) && cur.Annotations[fleetv1.FleetYAMLWarningsAnnotation] == warnings {
			record(d.Name, Unchanged)
			continue
		}
		cur.Spec = d.Spec
		cur.Labels = d.Labels
		// Only the reader's own annotation: others' annotations stay.
		if warnings != "" {
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			cur.Annotations[fleetv1.FleetYAMLWarningsAnnotation] = warnings
		} else {
			delete(cur.Annotations, fleetv1.FleetYAMLWarningsAnnotation)
		}
		if err := c.Update(ctx, cur); err != nil {
			return changes, fmt.Errorf("updating bundle %s: %w", d.Name, err)
		}
		record(d.Name, Configured)
	}
	if opts.NoPrune {
		return changes, nil
	}
	for _, b := range list.Items {
		if produced[b.Name] {
			continue
		}
		if err := c.Delete(ctx, &b); err != nil && !apierrors.IsNotFound(err) {
			return changes, fmt.Errorf("pruning bundle %s: %w", b.Name, err)
		}
		record(b.Name, Pruned)
	}
	return changes, nil
}
