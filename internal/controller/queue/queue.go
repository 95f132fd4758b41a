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
	"context"
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
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

// Batched enqueues, delay after an object is created, updated or deleted,
// the request toRequest maps it to. Events for the same request within the
// delay collapse into one reconcile: how rollups (Bundle and Cluster status)
// stay one write per batch however many deployments changed.
func Batched(delay time.Duration, toRequest func(client.Object) (reconcile.Request, bool)) handler.EventHandler {
	add := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if req, ok := toRequest(o); ok {
			q.AddAfter(req, delay)
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
	}
}
