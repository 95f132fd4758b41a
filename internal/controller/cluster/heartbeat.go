package cluster

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// ensureHeartbeatLease creates the Lease when the cache does not have it,
// so a steady-state reconcile costs no API call.
func (r *Reconciler) ensureHeartbeatLease(ctx context.Context, namespace string) error {
	var lease coordinationv1.Lease
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: clusterjoin.HeartbeatLease}, &lease)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	return clusterns.EnsureHeartbeatLease(ctx, r.Client, namespace)
}
