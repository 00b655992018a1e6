// Package background runs CPU-heavy work beside latency-sensitive work without
// taking its processors: at the lowest OS scheduling priority, on a processor
// (a Go P) added for the duration.
package background

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
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
func Run(f func() error) error { return run(f, false) }

// RunPaced is Run for work beside latency-sensitive work: the calls of Pace
// in f's loops keep it to short bursts with rests between them, so it takes
// longer but leaves the processors idle part of the time.
func RunPaced(f func() error) error { return run(f, true) }

func run(f func() error, paced bool) error {
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
		if paced {
			defer paceThread()()
		}
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

// A paced run works in bursts of about burst and rests after each, for at
// most paceFor; then it runs on unpaced, so that it still ends in good time
// on a machine too busy to give it much. Rests of 2 ms rather than 1: with a
// version loading into memory set aside for it, the p99 of an open-loop
// swap at 10,000 requests/s was 1.8–3.1 ms against 1.9–5.5 ms, over 8 pairs
// of runs, and the version served 7.5–8.3 s after its publish instead of
// 5.3–6.3 (BENCHMARKS.md, twelfth session).
const (
	burst   = time.Millisecond
	rest    = 2 * time.Millisecond
	paceFor = 15 * time.Second
)

var (
	pacing atomic.Int32 // threads running a paced f
	paced  sync.Map     // thread ID → *pace
	rests  atomic.Int64 // rests taken, for tests
)

// pace is the state of one paced thread.
type pace struct {
	began time.Time // the current burst
	until time.Time // the end of pacing
}

// paceThread registers the calling thread of RunPaced for Pace and returns
// the function that removes it.
func paceThread() func() {
	id, ok := threadID()
	if !ok {
		return func() {}
	}
	now := time.Now()
	paced.Store(id, &pace{began: now, until: now.Add(paceFor)})
	pacing.Add(1)
	return func() {
		pacing.Add(-1)
		paced.Delete(id)
	}
}

// Pace, called every few tens of microseconds from the loops of work that
// RunPaced may run, keeps that work to bursts: once a millisecond has passed
// since the thread's last rest, it sleeps for two, for the first 15 s of the
// run. A thread in SCHED_IDLE gives way to any other, yet beside a
// server under closed-loop load on 2 vCPUs an endless SCHED_IDLE loop cut the
// server's throughput by a fifth and doubled its p99, where the same loop in
// 1 ms bursts with 2 ms rests changed neither (BENCHMARKS.md): the rests
// leave a processor idle for the server's threads to wake on. Elsewhere (in
// Run, outside both, or where threads cannot be told apart) Pace returns at
// once.
func Pace() {
	if pacing.Load() == 0 {
		return
	}
	id, ok := threadID()
	if !ok {
		return
	}
	v, ok := paced.Load(id)
	if !ok {
		return
	}
	p := v.(*pace)
	now := time.Now()
	if now.Sub(p.began) < burst || now.After(p.until) {
		return
	}
	rests.Add(1)
	time.Sleep(rest)
	p.began = time.Now()
}
