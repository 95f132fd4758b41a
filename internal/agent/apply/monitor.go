package apply

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// Report is the readiness and drift of a deployment's objects.
type Report struct {
	// NonReady lists every object that is not ready (kstatus not Current).
	NonReady []fleetv1.NonReadyStatus
	// Modified lists every object that is missing, drifted, or left over.
	Modified  []fleetv1.ModifiedStatus
	Resources []fleetv1.BundleDeploymentResource
}

// Ready is true when no object is not ready.
func (r *Report) Ready() bool { return len(r.NonReady) == 0 }

// NonModified is true when nothing drifted.
func (r *Report) NonModified() bool { return len(r.Modified) == 0 }

// Check compares the desired objects (from Prepare, or a Helm release's
// manifest) with the live ones. Drift is found by a server-side apply dry
// run of each desired object, so fields the API server defaults are never
// reported. leftovers are objects that should be gone; any that still exist
// are reported with delete=true.
func (a *Applier) Check(ctx context.Context, desired []*unstructured.Unstructured, leftovers []Ref, opts fleetv1.BundleDeploymentOptions) (*Report, error) {
	r := &Report{}
	for _, want := range desired {
		ref := RefOf(want)
		live := ref.Unstructured()
		err := a.Client.Get(ctx, client.ObjectKeyFromObject(want), live)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			r.Modified = append(r.Modified, modifiedStatus(ref, func(m *fleetv1.ModifiedStatus) { m.Missing = true }))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		r.Resources = append(r.Resources, fleetv1.BundleDeploymentResource{
			APIVersion: ref.APIVersion, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name, CreatedAt: live.GetCreationTimestamp(),
		})
		if nr := readiness(live, opts.Ignore); nr != nil {
			r.NonReady = append(r.NonReady, *nr)
		}
		dry := want.DeepCopy()
		err = a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(dry), client.FieldOwner(FieldOwner), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			// The object as deployed would no longer be accepted (for example
			// its CRD changed); that is drift the user has to see.
			ctrl.LoggerFrom(ctx).V(1).Info("Dry-run apply failed", "object", ref.String(), "error", err.Error())
			r.Modified = append(r.Modified, modifiedStatus(ref, func(m *fleetv1.ModifiedStatus) { m.Patch = "dry-run apply failed: " + err.Error() }))
			continue
		}
		if modified, patch := compare(live, dry, opts.Diff); modified {
			r.Modified = append(r.Modified, modifiedStatus(ref, func(m *fleetv1.ModifiedStatus) { m.Patch = patch }))
		}
	}
	for _, ref := range leftovers {
		err := a.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, ref.Unstructured())
		if err == nil {
			r.Modified = append(r.Modified, modifiedStatus(ref, func(m *fleetv1.ModifiedStatus) { m.Delete = true }))
		}
	}
	return r, nil
}

// Leftovers returns the objects inv lists that desired does not contain.
func Leftovers(inv *Inventory, desired []*unstructured.Unstructured) []Ref {
	refs := make([]Ref, 0, len(desired))
	for _, o := range desired {
		refs = append(refs, RefOf(o))
	}
	return difference(refsOf(inv), refs)
}

func modifiedStatus(ref Ref, set func(*fleetv1.ModifiedStatus)) fleetv1.ModifiedStatus {
	m := fleetv1.ModifiedStatus{APIVersion: ref.APIVersion, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
	set(&m)
	return m
}

// readiness returns nil when live is ready by kstatus (Current), else why
// not. Conditions matching ignore are dropped first.
func readiness(live *unstructured.Unstructured, ignore *fleetv1.IgnoreOptions) *fleetv1.NonReadyStatus {
	obj := withoutIgnoredConditions(live, ignore)
	res, err := status.Compute(obj)
	ref := RefOf(live)
	nr := &fleetv1.NonReadyStatus{APIVersion: ref.APIVersion, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
	if err != nil {
		nr.Summary = fleetv1.ResourceSummary{State: "unknown", Message: err.Error(), Error: true}
		return nr
	}
	if res.Status == status.CurrentStatus {
		return nil
	}
	nr.Summary = fleetv1.ResourceSummary{
		State:         strings.ToLower(res.Status.String()),
		Message:       res.Message,
		Error:         res.Status == status.FailedStatus,
		Transitioning: res.Status == status.InProgressStatus || res.Status == status.TerminatingStatus,
	}
	return nr
}

func withoutIgnoredConditions(live *unstructured.Unstructured, ignore *fleetv1.IgnoreOptions) *unstructured.Unstructured {
	if ignore == nil || len(ignore.Conditions) == 0 {
		return live
	}
	conds, found, err := unstructured.NestedSlice(live.Object, "status", "conditions")
	if !found || err != nil {
		return live
	}
	kept := conds[:0:0]
	for _, c := range conds {
		cm, ok := c.(map[string]any)
		if ok && matchesAnyCondition(cm, ignore.Conditions) {
			continue
		}
		kept = append(kept, c)
	}
	obj := live.DeepCopy()
	_ = unstructured.SetNestedSlice(obj.Object, kept, "status", "conditions")
	return obj
}

func matchesAnyCondition(cond map[string]any, rules []map[string]string) bool {
	for _, rule := range rules {
		if len(rule) == 0 {
			continue
		}
		all := true
		for k, v := range maps.All(rule) {
			if fmt.Sprint(cond[k]) != v {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}
