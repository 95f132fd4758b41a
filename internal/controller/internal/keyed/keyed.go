// Package keyed holds what a controller remembers about each object between
// reconciles. It lives in memory on purpose: after a restart every object is
// handled once from scratch, which is always safe.
package keyed

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// Map is safe for concurrent reconciles; its zero value is ready to use.
type Map[T any] struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*T
}

// Get returns the entry for key, creating a zero one the first time.
func (m *Map[T]) Get(key types.NamespacedName) *T {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[types.NamespacedName]*T{}
	}
	v, ok := m.m[key]
	if !ok {
		v = new(T)
		m.m[key] = v
	}
	return v
}

// Forget drops key's entry (the object is gone).
func (m *Map[T]) Forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
}

// Len is how many objects are remembered.
func (m *Map[T]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}
