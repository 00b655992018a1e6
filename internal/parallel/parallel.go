// Package parallel runs a loop's iterations on several goroutines.
package parallel

import (
	"context"
	"sync"
	"sync/atomic"
)

// For calls fn(worker, i) for every i in [0, n) on the given number of
// goroutines and waits for them; with one, on the caller's own, so on its
// thread and at its priority (a version loading in the background keeps its
// thread's low priority). Which worker runs an iteration varies between runs,
// so fn's result for an iteration must not depend on the worker except
// through scratch space. It stops handing out iterations once ctx is done and
// then returns ctx.Err().
func For(ctx context.Context, workers, n int, fn func(worker, i int)) error {
	workers = min(workers, n)
	if workers <= 1 {
		for i := 0; i < n && ctx.Err() == nil; i++ {
			fn(0, i)
		}
		return ctx.Err()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(w, i)
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}
