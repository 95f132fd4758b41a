package bundle

import "sync"

// writeConcurrency bounds the BundleDeployment writes one reconcile has in
// flight; workers bounds concurrent reconciles per controller. Together
// they keep the apiserver busy without a thundering herd.
const (
	writeConcurrency = 32
	workers          = 4
)

// inParallel calls f(0..n-1) on at most limit goroutines and returns when
// all calls have.
func inParallel(n, limit int, f func(i int)) {
	if n <= 1 || limit <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, limit) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
