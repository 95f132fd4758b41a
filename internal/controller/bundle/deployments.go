package bundle

import (
	"context"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/bdfinalizer"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/jsonvalue"
)

// desiredDeployment starts from the cluster's current BundleDeployment (a
// copy) or a new one.
func desiredDeployment(bundle *fleetv1.Bundle, cluster *fleetv1.Cluster, current *fleetv1.BundleDeployment) *fleetv1.BundleDeployment {
	clusterNS, _ := clusterns.Of(cluster)
	if current != nil && current.Namespace == clusterNS {
		return current.DeepCopy()
	}
	return &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{
		Namespace: clusterNS,
		Name:      DeploymentName(bundle.Namespace, bundle.Name, cluster.Namespace),
		// Set here rather than by the agent: one write less per deployment.
		Finalizers: []string{bdfinalizer.Name},
	}}
}

// finalizeDeployment sets everything but the (staged) deployment: labels,
// back references, pause, dependencies and drift correction.
func finalizeDeployment(bd *fleetv1.BundleDeployment, bundle *fleetv1.Bundle, cluster *fleetv1.Cluster, paused bool) {
	if bd.Labels == nil {
		bd.Labels = map[string]string{}
	}
	maps.Copy(bd.Labels, map[string]string{
		fleetv1.BundleNameLabel:       LabelValue(bundle.Name),
		fleetv1.BundleNamespaceLabel:  LabelValue(bundle.Namespace),
		fleetv1.ClusterNameLabel:      LabelValue(cluster.Name),
		fleetv1.ClusterNamespaceLabel: LabelValue(cluster.Namespace),
	})
	bd.Spec.BundleName = bundle.Name
	bd.Spec.BundleNamespace = bundle.Namespace
	bd.Spec.Paused = paused
	bd.Spec.DependsOn = bundle.Spec.DependsOn
	// correctDrift is not part of the deployment ID, so it takes effect at
	// once, without waiting for the rollout.
	bd.Spec.CorrectDrift = bd.Spec.StagedOptions.CorrectDrift
	if bd.Spec.DeploymentID == bd.Spec.StagedDeploymentID {
		// Same ID, so only options outside the ID (diff) can differ; they
		// take effect without a redeploy too.
		bd.Spec.Options = *bd.Spec.StagedOptions.DeepCopy()
	}
}

// write creates or updates desired when it differs from original and
// returns what is now stored.
func (r *Reconciler) write(ctx context.Context, original, desired *fleetv1.BundleDeployment) (*fleetv1.BundleDeployment, error) {
	log := logf.FromContext(ctx).WithValues("BundleDeployment", klog.KObj(desired))
	if original == nil || original.Namespace != desired.Namespace || original.Name != desired.Name {
		if original != nil {
			if err := r.delete(ctx, original); err != nil {
				return nil, err
			}
		}
		log.V(1).Info("Creating BundleDeployment", "deploymentID", desired.Spec.DeploymentID)
		if err := r.Client.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return r.writeOverLive(ctx, desired)
			}
			return nil, fmt.Errorf("creating bundle deployment %s: %w", klog.KObj(desired), err)
		}
		bdWrites.WithLabelValues("create").Inc()
		return desired, nil
	}
	if jsonvalue.Equal(original.Spec, desired.Spec) && maps.Equal(original.Labels, desired.Labels) {
		return original, nil
	}
	log.V(1).Info("Updating BundleDeployment", "deploymentID", desired.Spec.DeploymentID, "stagedDeploymentID", desired.Spec.StagedDeploymentID)
	// A merge patch of what changed, without optimistic locking: the
	// manager owns spec and labels, the agent only writes status, so an
	// agent report in between must not fail the write with a conflict.
	if err := r.Client.Patch(ctx, desired, client.MergeFrom(original)); err != nil {
		return nil, fmt.Errorf("updating bundle deployment %s: %w", klog.KObj(desired), err)
	}
	bdWrites.WithLabelValues("update").Inc()
	return desired, nil
}

// writeOverLive handles a create that found the object already there: the
// cache had not seen it yet (a retry, or the other controller of the pair
// created it). It reads the live object and patches it to desired, rather
// than failing and retrying the whole pass from the same stale cache.
func (r *Reconciler) writeOverLive(ctx context.Context, desired *fleetv1.BundleDeployment) (*fleetv1.BundleDeployment, error) {
	live := &fleetv1.BundleDeployment{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(desired), live); err != nil {
		return nil, fmt.Errorf("reading bundle deployment %s after a create conflict: %w", klog.KObj(desired), err)
	}
	updated := live.DeepCopy()
	updated.Spec = desired.Spec
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	maps.Copy(updated.Labels, desired.Labels)
	return r.write(ctx, live, updated)
}

func (r *Reconciler) delete(ctx context.Context, bd *fleetv1.BundleDeployment) error {
	logf.FromContext(ctx).V(1).Info("Deleting BundleDeployment", "BundleDeployment", klog.KObj(bd))
	if err := r.Client.Delete(ctx, bd, client.Preconditions{UID: &bd.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting bundle deployment %s: %w", klog.KObj(bd), err)
	}
	bdWrites.WithLabelValues("delete").Inc()
	// The agent removes its finalizer after cleaning up downstream. A
	// cluster whose agent never checked in has nothing deployed and no
	// agent to do it: release the finalizer so the deletion completes.
	if bdfinalizer.Has(bd) && r.neverCheckedIn(ctx, bd) {
		if err := bdfinalizer.Release(ctx, r.Client, bd, false); err != nil {
			return fmt.Errorf("releasing the agent finalizer of bundle deployment %s: %w", klog.KObj(bd), err)
		}
	}
	return nil
}

// neverCheckedIn reports whether the deployment's cluster has never heard
// from an agent.
func (r *Reconciler) neverCheckedIn(ctx context.Context, bd *fleetv1.BundleDeployment) bool {
	key := types.NamespacedName{Namespace: bd.Labels[fleetv1.ClusterNamespaceLabel], Name: bd.Labels[fleetv1.ClusterNameLabel]}
	if key.Name == "" {
		return false
	}
	var cluster fleetv1.Cluster
	if err := r.Client.Get(ctx, key, &cluster); err != nil {
		return false
	}
	return cluster.Status.Agent.LastSeen.IsZero()
}

// contentsID returns the ID of the bundle's manifest: spec.contentsID, or
// the ID of spec.resources, which are stored as a Content the first time
// they are seen so agents always read Contents. The ID is never written
// back to the Bundle.
func (r *Reconciler) contentsID(ctx context.Context, bundle *fleetv1.Bundle) (string, error) {
	if bundle.Spec.ContentsID != "" {
		return bundle.Spec.ContentsID, nil
	}
	key := types.NamespacedName{Namespace: bundle.Namespace, Name: bundle.Name}
	r.mu.Lock()
	e, ok := r.contents[key]
	stored := ok && r.stored[e.id]
	r.mu.Unlock()
	if ok && e.uid == bundle.UID && e.generation == bundle.Generation && stored {
		return e.id, nil
	}
	m := &content.Manifest{Resources: bundle.Spec.Resources}
	_, id, err := content.Encode(m)
	if err != nil {
		return "", fmt.Errorf("encoding resources of bundle %s/%s: %w", bundle.Namespace, bundle.Name, err)
	}
	r.mu.Lock()
	stored = r.stored[id]
	r.mu.Unlock()
	if !stored {
		if _, err := content.Store(ctx, r.ContentClient, m); err != nil {
			return "", fmt.Errorf("storing resources of bundle %s/%s: %w", bundle.Namespace, bundle.Name, err)
		}
	}
	r.mu.Lock()
	r.stored[id] = true
	r.contents[key] = contentsEntry{uid: bundle.UID, generation: bundle.Generation, id: id}
	r.mu.Unlock()
	return id, nil
}

// forget drops cached state of a deleted bundle.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.contents, key)
	r.mu.Unlock()
}
