package clusterns

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// EnsureHeartbeatLease creates the agent's heartbeat Lease in the cluster's
// namespace. The manager creates it so that the agent needs no create right
// on Leases: with one it could plant the tunnel Lease, whose holder decides
// where the kube-api proxy forwards requests.
func EnsureHeartbeatLease(ctx context.Context, c client.Client, namespace string) error {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: clusterjoin.HeartbeatLease}}
	if err := c.Create(ctx, lease); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating heartbeat Lease %s/%s: %w", namespace, clusterjoin.HeartbeatLease, err)
	}
	return nil
}
