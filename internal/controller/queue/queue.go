// Package queue holds the work-queue settings every manager controller
// shares.
//
// controller-runtime's default rate limiter adds an overall token bucket
// (10 retries/s, burst 100) to the per-item backoff. At fleet scale a burst
// of optimistic-lock conflicts (a status patch racing the cache) exceeds
// that bucket and every later retry queues behind it, turning a few
// milliseconds of conflict into minutes. Retries here back off per item
// only, from 5 ms to 30 s.
package queue

import (
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Retry backoff per item.
const (
	BaseDelay = 5 * time.Millisecond
	MaxDelay  = 30 * time.Second
)

// Options runs workers reconciles at once with per-item retry backoff.
func Options(workers int) controller.Options {
	return controller.Options{
		MaxConcurrentReconciles: workers,
		RateLimiter:             RateLimiter(),
	}
}

// RateLimiter backs off each item on its own, without an overall bucket.
func RateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](BaseDelay, MaxDelay)
}
