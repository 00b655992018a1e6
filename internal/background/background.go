// Package background runs CPU-heavy work beside latency-sensitive work without
// taking its processors: at the lowest OS scheduling priority, on a processor
// (a Go P) added for the duration.
package background

import (
	"runtime"
	"sync"
)

var (
	mu     sync.Mutex
	active int // calls of Run in progress
	base   int // GOMAXPROCS before the first of them
)

// Run calls f on an OS thread of its own at the lowest scheduling priority the
// OS offers a thread (SCHED_IDLE on Linux) and returns what f returns. While f
// runs, GOMAXPROCS is one higher, so the goroutines already running keep as
// many processors as before: the OS, not the Go scheduler, decides who runs,
// and it lets f have only the CPU time they leave. Goroutines f starts run at
// normal priority. A panic in f is raised again in the caller.
func Run(f func() error) error {
	grow()
	defer shrink()
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		// The thread is never unlocked: it exits with this goroutine, and its
		// priority with it.
		runtime.LockOSThread()
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.panic = p
			}
			done <- r
		}()
		lowerThreadPriority()
		r.err = f()
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

func grow() {
	mu.Lock()
	defer mu.Unlock()
	if active == 0 {
		base = runtime.GOMAXPROCS(0)
	}
	active++
	runtime.GOMAXPROCS(base + active)
}

func shrink() {
	mu.Lock()
	defer mu.Unlock()
	active--
	runtime.GOMAXPROCS(base + active)
}
