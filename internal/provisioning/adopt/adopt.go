// Package adopt is how a provisioned cluster's pools choose and take
// MachineInventories: which inventories a pool's selector matches and which
// of those are free (Match, pure, shared by the controller and `edgefleet
// cluster preview`), and the exclusive claim (Claim, Release).
//
// A claim is two-phase. Phase one labels the inventory with the cluster and
// pool through an optimistic-concurrency Update of the inventory as read:
// of two managers (or two clusters) racing for one inventory, exactly one
// write succeeds, the other gets a conflict and, reading again, sees the
// inventory taken. Phase two creates the ClusterMachine named after the
// inventory. A claim whose ClusterMachine does not appear within a grace
// period (the claimer died between the phases) is released by whoever
// finds it, so no inventory stays half-adopted.
package adopt

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
)

// DefaultGrace is how long a claim may wait for its ClusterMachine.
const DefaultGrace = 30 * time.Second

// Pool is one pool of a cluster, as adoption sees it.
type Pool struct {
	Name     string
	Replicas int32
	Selector labels.Selector
}

// Pools are a ProvisionedCluster's pools, control plane first. A selector
// that does not parse is an error naming the pool.
func Pools(pc *provisioningv1.ProvisionedCluster) ([]Pool, error) {
	cp, err := metav1.LabelSelectorAsSelector(&pc.Spec.ControlPlane.MachineSelector)
	if err != nil {
		return nil, fmt.Errorf("spec.controlPlane.machineSelector: %w", err)
	}
	out := []Pool{{Name: provisioningv1.ControlPlanePool, Replicas: pc.Spec.ControlPlane.Replicas, Selector: cp}}
	for i, w := range pc.Spec.Workers {
		if w.Name == provisioningv1.ControlPlanePool {
			return nil, fmt.Errorf("spec.workers[%d].name %q is reserved for the control plane: rename the pool", i, w.Name)
		}
		sel, err := metav1.LabelSelectorAsSelector(&w.MachineSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.workers[%d] (%s).machineSelector: %w", i, w.Name, err)
		}
		out = append(out, Pool{Name: w.Name, Replicas: w.Replicas, Selector: sel})
	}
	return out, nil
}

// PoolMatch is what one pool's selector finds.
type PoolMatch struct {
	Pool Pool
	// Adopted are the inventories this pool holds already.
	Adopted []string
	// Available are Ready, unclaimed inventories the selector matches, in
	// adoption order (by name).
	Available []string
	// NotReady match but are not Ready (not adoptable yet).
	NotReady []string
	// Taken match but belong to another cluster (or another pool of this
	// one): name → "cluster/pool".
	Taken map[string]string
}

// Missing is how many more machines the pool needs than it holds and can
// find now.
func (m PoolMatch) Missing() int {
	n := int(m.Pool.Replicas) - len(m.Adopted) - len(m.Available)
	return max(n, 0)
}

// Message says what the pool waits for, or "" when it has enough.
func (m PoolMatch) Message() string {
	need := int(m.Pool.Replicas) - len(m.Adopted)
	if need <= 0 || len(m.Available) >= need {
		return ""
	}
	return fmt.Sprintf("pool %s needs %d more machine(s) but its machineSelector %q matches %d Ready unclaimed MachineInventory(ies) (%d matching not Ready, %d in other clusters or pools): register machines with these labels or change the selector",
		m.Pool.Name, need, m.Pool.Selector.String(), len(m.Available), len(m.NotReady), len(m.Taken))
}

// Ready is an inventory's Ready condition.
func Ready(inv *machinesv1.MachineInventory) bool {
	return meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition)
}

// ClaimOf is the cluster and pool that claimed inv ("" when free).
func ClaimOf(inv *machinesv1.MachineInventory) (cluster, pool string) {
	return inv.Labels[provisioningv1.ClusterLabel], inv.Labels[provisioningv1.PoolLabel]
}

// Match computes each pool's match over the namespace's inventories for
// cluster. An inventory matching several pools is offered to the first
// (control plane first), so pools never compete for one machine.
func Match(cluster string, pools []Pool, inventories []machinesv1.MachineInventory) []PoolMatch {
	invs := slices.Clone(inventories)
	slices.SortFunc(invs, func(a, b machinesv1.MachineInventory) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	out := make([]PoolMatch, len(pools))
	offered := map[string]bool{}
	for i, p := range pools {
		m := PoolMatch{Pool: p, Taken: map[string]string{}}
		for j := range invs {
			inv := &invs[j]
			if !inv.DeletionTimestamp.IsZero() {
				continue
			}
			c, pool := ClaimOf(inv)
			if c == cluster && pool == p.Name {
				m.Adopted = append(m.Adopted, inv.Name)
				continue
			}
			if !p.Selector.Matches(labels.Set(inv.Labels)) {
				continue
			}
			switch {
			case c != "":
				m.Taken[inv.Name] = c + "/" + pool
			case offered[inv.Name]:
				m.Taken[inv.Name] = cluster + "/" + "(an earlier pool)"
			case !Ready(inv) || inv.Annotations[provisioningv1.RemediatedAnnotation] != "":
				// Quarantined: released by health remediation.
				m.NotReady = append(m.NotReady, inv.Name)
			default:
				m.Available = append(m.Available, inv.Name)
			}
		}
		// The machines this pool will take are not offered to later pools.
		need := max(int(p.Replicas)-len(m.Adopted), 0)
		for _, name := range m.Available[:min(need, len(m.Available))] {
			offered[name] = true
		}
		out[i] = m
	}
	return out
}

// Claim labels inv for cluster's pool, through an Update conditioned on the
// resourceVersion inv was read at. It returns false (and no error) when
// another writer changed inv first: the caller reads it again.
func Claim(ctx context.Context, c client.Client, inv *machinesv1.MachineInventory, cluster, pool string, now time.Time) (bool, error) {
	if cl, _ := ClaimOf(inv); cl != "" {
		return false, nil
	}
	claimed := inv.DeepCopy()
	claimed.Labels = maps.Clone(claimed.Labels)
	if claimed.Labels == nil {
		claimed.Labels = map[string]string{}
	}
	claimed.Labels[provisioningv1.ClusterLabel] = cluster
	claimed.Labels[provisioningv1.PoolLabel] = pool
	if claimed.Annotations == nil {
		claimed.Annotations = map[string]string{}
	}
	claimed.Annotations[provisioningv1.ClaimedAtAnnotation] = now.UTC().Format(time.RFC3339)
	// Update sends the resourceVersion read: a concurrent claim conflicts.
	if err := c.Update(ctx, claimed); err != nil {
		if isConflictOrGone(err) {
			return false, nil
		}
		return false, fmt.Errorf("claiming MachineInventory %s/%s: %w", inv.Namespace, inv.Name, err)
	}
	*inv = *claimed
	return true, nil
}

// Release removes cluster's claim from inv (no-op when inv is not
// cluster's), again conditioned on the resourceVersion read.
func Release(ctx context.Context, c client.Client, inv *machinesv1.MachineInventory, cluster string) error {
	if cl, _ := ClaimOf(inv); cl != cluster {
		return nil
	}
	freed := inv.DeepCopy()
	freed.Labels = maps.Clone(freed.Labels)
	delete(freed.Labels, provisioningv1.ClusterLabel)
	delete(freed.Labels, provisioningv1.PoolLabel)
	freed.Annotations = maps.Clone(freed.Annotations)
	delete(freed.Annotations, provisioningv1.ClaimedAtAnnotation)
	if err := c.Update(ctx, freed); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil
		}
		return fmt.Errorf("releasing MachineInventory %s/%s: %w", inv.Namespace, inv.Name, err)
	}
	*inv = *freed
	return nil
}

// ClaimAge is how long ago inv was claimed; a claim without a readable
// time is as old as can be (formation always writes one).
func ClaimAge(inv *machinesv1.MachineInventory, now time.Time) time.Duration {
	t, err := time.Parse(time.RFC3339, inv.Annotations[provisioningv1.ClaimedAtAnnotation])
	if err != nil {
		return time.Duration(1<<63 - 1)
	}
	return now.Sub(t)
}

// WouldAdopt splits Available into the machines the pool takes now (as
// many as it still needs, in adoption order) and the rest.
func (m PoolMatch) WouldAdopt() (take, rest []string) {
	need := max(int(m.Pool.Replicas)-len(m.Adopted), 0)
	n := min(need, len(m.Available))
	return m.Available[:n], m.Available[n:]
}
