package queue

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
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
