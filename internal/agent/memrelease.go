package agent

import (
	"runtime/debug"
	"sync"
	"time"
)

// releaseQuiet is how long after the last deploy, drift correction or
// removal the agent hands freed memory back to the OS.
const releaseQuiet = 10 * time.Second

// memoryReleaser returns the garbage of a burst of work (Helm actions,
// chart rendering, Kustomize builds) to the OS once the burst is over.
// Without it an idle agent keeps that garbage, and the heap it grew into,
// resident until the runtime's periodic GC and background scavenger get to
// it minutes later. One forced collection per burst costs a few
// milliseconds of CPU for the agent's heap of a few MiB.
type memoryReleaser struct {
	mu    sync.Mutex
	quiet time.Duration
	timer *time.Timer
}

// touch (re)starts the quiet period.
func (m *memoryReleaser) touch() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer == nil {
		m.timer = time.AfterFunc(m.quiet, debug.FreeOSMemory)
		return
	}
	m.timer.Reset(m.quiet)
}

func (m *memoryReleaser) stop() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer != nil {
		m.timer.Stop()
	}
}
