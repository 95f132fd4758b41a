package queue

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Many items failing at once must each retry after the base delay: no
// shared bucket may push the 500th item's first retry out by seconds.
func TestManyFailingItemsRetryAfterTheBaseDelay(t *testing.T) {
	rl := RateLimiter()
	for i := range 500 {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Name: string(rune('a' + i%26)), Namespace: time.Duration(i).String()}}
		if d := rl.When(req); d != BaseDelay {
			t.Fatalf("item %d: first retry after %s, want %s", i, d, BaseDelay)
		}
	}
}

func TestOneItemBacksOffUpToTheMaximum(t *testing.T) {
	rl := RateLimiter()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "x"}}
	var last time.Duration
	for range 40 {
		last = rl.When(req)
	}
	if last != MaxDelay {
		t.Fatalf("after 40 failures the delay is %s, want %s", last, MaxDelay)
	}
	rl.Forget(req)
	if d := rl.When(req); d != BaseDelay {
		t.Fatalf("after Forget the delay is %s, want %s", d, BaseDelay)
	}
}

// Events for one object within the delay become one request, after the
// delay; objects the mapping rejects are never queued.
func TestBatchedCollapsesEventsIntoOneDelayedRequest(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(RateLimiter())
	defer q.ShutDown()
	h := Batched(100*time.Millisecond, func(o client.Object) (reconcile.Request, bool) {
		return reconcile.Request{NamespacedName: types.NamespacedName{Name: o.GetName()}}, o.GetName() != "ignored"
	})
	ctx := context.Background()
	a, ignored := &corev1.ConfigMap{}, &corev1.ConfigMap{}
	a.Name, ignored.Name = "a", "ignored"
	h.Create(ctx, event.TypedCreateEvent[client.Object]{Object: a}, q)
	h.Update(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: a, ObjectNew: a}, q)
	h.Delete(ctx, event.TypedDeleteEvent[client.Object]{Object: a}, q)
	h.Create(ctx, event.TypedCreateEvent[client.Object]{Object: ignored}, q)
	if n := q.Len(); n != 0 {
		t.Fatalf("%d requests queued before the delay, want 0", n)
	}
	time.Sleep(300 * time.Millisecond)
	if n := q.Len(); n != 1 {
		t.Fatalf("%d requests queued after the delay, want 1", n)
	}
	if req, _ := q.Get(); req.Name != "a" {
		t.Fatalf("queued %v, want a", req)
	}
}
