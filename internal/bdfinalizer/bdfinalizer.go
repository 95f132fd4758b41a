// Package bdfinalizer is the whole lifecycle of a BundleDeployment's
// agent-cleanup finalizer (fleetv1.AgentCleanupFinalizer), which keeps the
// BundleDeployment until what it deployed downstream is removed:
//
//  1. the bundle controller sets it on every BundleDeployment it creates
//     (Set: one agent write less per deployment);
//  2. the agent adds it when missing (Ensure), before it deploys;
//  3. the agent removes it once it has cleaned up downstream (Release);
//  4. the bundle controller removes it when it deletes a BundleDeployment of
//     a cluster whose agent never checked in: nothing was deployed and no
//     agent will come (Release);
//  5. the cluster controller removes it from every BundleDeployment of a
//     deleted Cluster, whose agent can no longer reach them (ReleaseAll).
//
// Both sides import it: it links only the API types and a client.
package bdfinalizer

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// Name is the finalizer.
const Name = fleetv1.AgentCleanupFinalizer

// Set puts the finalizer on a BundleDeployment about to be created.
func Set(bd *fleetv1.BundleDeployment) { controllerutil.AddFinalizer(bd, Name) }

// Has reports whether bd carries the finalizer.
func Has(bd *fleetv1.BundleDeployment) bool { return controllerutil.ContainsFinalizer(bd, Name) }

// Ensure adds the finalizer to bd if it is missing.
func Ensure(ctx context.Context, c client.Client, bd *fleetv1.BundleDeployment) error {
	if Has(bd) {
		return nil
	}
	before := bd.DeepCopy()
	controllerutil.AddFinalizer(bd, Name)
	return c.Patch(ctx, bd, client.MergeFrom(before))
}

// Release removes the finalizer from bd; a BundleDeployment already gone is
// no error. With optimisticLock the patch fails if bd changed since it was
// read.
func Release(ctx context.Context, c client.Client, bd *fleetv1.BundleDeployment, optimisticLock bool) error {
	if !Has(bd) {
		return nil
	}
	before := bd.DeepCopy()
	var patch client.Patch = client.MergeFrom(before)
	if optimisticLock {
		patch = client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	}
	controllerutil.RemoveFinalizer(bd, Name)
	if err := c.Patch(ctx, bd, patch); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// ReleaseAll removes the finalizer from every BundleDeployment in namespace.
func ReleaseAll(ctx context.Context, c client.Client, namespace string) error {
	var list fleetv1.BundleDeploymentList
	if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing bundle deployments in %s: %w", namespace, err)
	}
	for i := range list.Items {
		bd := &list.Items[i]
		if err := Release(ctx, c, bd, true); err != nil {
			return fmt.Errorf("releasing the agent finalizer of bundle deployment %s/%s: %w", namespace, bd.Name, err)
		}
	}
	return nil
}
