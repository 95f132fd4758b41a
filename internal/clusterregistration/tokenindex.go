package clusterregistration

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// tokenHashIndex indexes the token Secrets by TokenHashLabel.
const tokenHashIndex = "tokenHash"

// newTokenSecretCache watches only the registration tokens' Secrets (those
// with TokenHashLabel), indexed by hash: an unauthenticated /v1/register or
// /v1/import costs a map lookup, never a LIST against the kube-apiserver,
// and the manager caches no other Secret.
func newTokenSecretCache(cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, error) {
	hasHash, err := labels.NewRequirement(TokenHashLabel, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{
		Scheme:           scheme,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: labels.NewSelector().Add(*hasHash)}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the token Secret cache: %w", err)
	}
	if err := c.IndexField(context.Background(), &corev1.Secret{}, tokenHashIndex, func(o client.Object) []string {
		if h := o.GetLabels()[TokenHashLabel]; h != "" {
			return []string{h}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("indexing token Secrets: %w", err)
	}
	return c, nil
}

// everyReplica runs a cache on every replica, not only the leader.
type everyReplica struct{ cache.Cache }

func (everyReplica) NeedLeaderElection() bool { return false }
