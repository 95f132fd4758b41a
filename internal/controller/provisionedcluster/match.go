package provisionedcluster

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/provisioning/adopt"
)

// match computes each pool's match (adopt.Match) over the inventories that
// can change it: this cluster's claims and the free inventories a pool's
// selector matches, both read through claimIndex, so a reconcile copies
// what it may adopt, not the namespace. Inventories other clusters claimed
// only count in a short pool's message ("n in other clusters or pools"),
// so they are counted, from the cache without copies, only then.
func (f *formation) match(ctx context.Context) error {
	f.candidates = slices.Clone(f.inventories)
	seen := map[string]bool{}
	for i := range f.candidates {
		seen[f.candidates[i].Name] = true
	}
	for _, p := range f.pools {
		var free machinesv1.MachineInventoryList
		if err := f.r.Client.List(ctx, &free, client.InNamespace(f.pc.Namespace),
			client.MatchingFields{claimIndex: unclaimed}, client.MatchingLabelsSelector{Selector: p.Selector}); err != nil {
			return fmt.Errorf("listing free machine inventories of pool %s: %w", p.Name, err)
		}
		for _, inv := range free.Items {
			// This reconcile's own copy (a claim it just released) wins.
			if !seen[inv.Name] {
				seen[inv.Name] = true
				f.candidates = append(f.candidates, inv)
			}
		}
	}
	f.matches = adopt.Match(f.pc.Name, f.pools, f.candidates)
	for i := range f.matches {
		if f.matches[i].Message() == "" {
			continue
		}
		if err := f.countTaken(ctx, &f.matches[i]); err != nil {
			return err
		}
	}
	return nil
}

// countTaken adds to pm.Taken the inventories pm's selector matches that
// other clusters claimed, as adopt.Match over the whole namespace would.
func (f *formation) countTaken(ctx context.Context, pm *adopt.PoolMatch) error {
	claimed, err := labels.NewRequirement(provisioningv1.ClusterLabel, selection.Exists, nil)
	if err != nil {
		return err
	}
	var taken machinesv1.MachineInventoryList
	// Read only: the cache's objects, not copies.
	if err := f.r.Client.List(ctx, &taken, client.InNamespace(f.pc.Namespace),
		client.MatchingLabelsSelector{Selector: pm.Pool.Selector.Add(*claimed)}, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("counting claimed machine inventories of pool %s: %w", pm.Pool.Name, err)
	}
	for i := range taken.Items {
		inv := &taken.Items[i]
		if c, pool := adopt.ClaimOf(inv); c != f.pc.Name && inv.DeletionTimestamp.IsZero() {
			pm.Taken[inv.Name] = c + "/" + pool
		}
	}
	return nil
}
