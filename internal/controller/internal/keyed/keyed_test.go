package keyed

import (
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestMapRemembersPerObjectUntilForgotten(t *testing.T) {
	type state struct{ failures int }
	var m Map[state]
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "other", Name: "a"}

	m.Get(a).failures = 3
	if got := m.Get(a).failures; got != 3 {
		t.Fatalf("a remembered %d failures, want 3", got)
	}
	if got := m.Get(b).failures; got != 0 {
		t.Fatalf("a namespace's object shares state with another's: %d", got)
	}
	m.Forget(a)
	if got := m.Get(a).failures; got != 0 {
		t.Fatalf("a forgotten object kept %d failures", got)
	}
	if m.Len() != 2 {
		t.Fatalf("Len %d, want 2", m.Len())
	}
}

func TestMapConcurrentGetReturnsOneEntry(t *testing.T) {
	var m Map[int]
	key := types.NamespacedName{Name: "x"}
	got := make([]*int, 16)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = m.Get(key) })
	}
	wg.Wait()
	for _, p := range got[1:] {
		if p != got[0] {
			t.Fatal("concurrent reconciles of one object got different state entries")
		}
	}
}
