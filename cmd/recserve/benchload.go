package main

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// sample is one finished request: when it started and how long it took (both
// in ns, start relative to the start of the load), its status and the model
// version that answered. In an open loop it starts when it was due, and lag is
// how long after that the load generator sent it (part of took).
type sample struct {
	at, took, lag int64
	code          codes.Code
	version       string
	short         bool // fewer items than asked for
}

// loadGen drives Recommend traffic. In a closed loop (rate 0) each worker sends
// its next request as soon as the previous one returns. In an open loop,
// requests are due at a fixed rate whatever the answers' speed; a worker takes
// the next due request when it is free, and latency counts from when the
// request was due, so time spent waiting for a free worker is included
// (no coordinated omission).
type loadGen struct {
	conns   []*grpc.ClientConn
	users   int
	n       int32
	timeout time.Duration
	workers int
	rate    float64 // requests per second; 0: closed loop
	// newVersion, when set, is watched for: the first response from it is recorded.
	newVersion string
	firstNew   atomic.Int64 // completion time (ns since start) of the first such response, or 0
	samples    [][]sample   // one list per worker, written only by it; set before run
}

// run sends requests until ctx is done and returns every worker's samples.
func (g *loadGen) run(ctx context.Context, start time.Time) []sample {
	var due chan int64
	if g.rate > 0 {
		due = make(chan int64, max(int(g.rate), g.workers)) // a second of requests can wait for a worker
		go schedule(ctx, start, g.rate, due)
	}
	var wg sync.WaitGroup
	for w := range g.workers {
		wg.Go(func() { g.worker(ctx, start, w, due) })
	}
	wg.Wait()
	return g.collect()
}

// schedule sends the due time (ns since start) of request i, start + i/rate,
// once it has come, until ctx is done; then it closes due.
func schedule(ctx context.Context, start time.Time, rate float64, due chan<- int64) {
	defer close(due)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0.0; ; i++ {
		at := int64(i * 1e9 / rate)
		if wait := at - time.Since(start).Nanoseconds(); wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case due <- at:
		case <-ctx.Done():
			return
		}
	}
}

// collect returns every worker's samples, by start time.
func (g *loadGen) collect() []sample {
	var all []sample
	for _, l := range g.samples {
		all = append(all, l...)
	}
	slices.SortFunc(all, func(a, b sample) int { return cmp.Compare(a.at, b.at) })
	return all
}

// worker sends requests until ctx is done: back to back, or one per due time
// received from due (open loop) until it is closed.
func (g *loadGen) worker(ctx context.Context, start time.Time, w int, due <-chan int64) {
	conn := g.conns[w%len(g.conns)]
	codec := grpc.ForceCodecV2(benchCodec{})
	var reply benchReply
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	n := g.n
	for ctx.Err() == nil {
		req := &recservev1.RecommendRequest{UserId: benchUserID(rng.IntN(g.users)), N: &n}
		var at int64 // when the request was due (open loop) or sent (closed loop)
		if due != nil {
			var ok bool
			if at, ok = <-due; !ok {
				return
			}
		}
		sent := time.Now()
		if due == nil {
			at = sent.Sub(start).Nanoseconds()
		}
		rctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		err := conn.Invoke(rctx, recservev1.RecommendService_Recommend_FullMethodName, req, &reply, codec)
		cancel()
		t1 := time.Now()
		s := sample{at: at, took: t1.Sub(start).Nanoseconds() - at, lag: sent.Sub(start).Nanoseconds() - at, code: status.Code(err)}
		if err == nil {
			s.version = reply.version
			s.short = reply.items < int(n)
			if g.newVersion != "" && s.version == g.newVersion {
				g.firstNew.CompareAndSwap(0, t1.Sub(start).Nanoseconds())
			}
		}
		g.samples[w] = append(g.samples[w], s)
	}
}

// window summarizes the samples that started in [from, to) ns.
type window struct {
	requests, short int
	errors          map[codes.Code]int
	versions        map[string]int
	seconds         float64
	lat             []time.Duration // sorted
	lag             []time.Duration // sorted; send lags of the successful requests
}

func summarize(samples []sample, from, to int64) window {
	w := window{errors: map[codes.Code]int{}, versions: map[string]int{}, seconds: float64(to-from) / 1e9}
	for _, s := range samples {
		if s.at < from || s.at >= to {
			continue
		}
		w.requests++
		if s.code != codes.OK {
			w.errors[s.code]++
			continue
		}
		w.versions[s.version]++
		if s.short {
			w.short++
		}
		w.lat = append(w.lat, time.Duration(s.took))
		w.lag = append(w.lag, time.Duration(s.lag))
	}
	slices.Sort(w.lat)
	slices.Sort(w.lag)
	return w
}

func (w window) failed() int {
	n := 0
	for _, c := range w.errors {
		n += c
	}
	return n
}

func (w window) rps() float64 {
	if w.seconds <= 0 {
		return 0
	}
	return float64(w.requests) / w.seconds
}

// quantile returns the q-quantile of the successful requests' latencies
// (nearest rank), or 0 without any.
func (w window) quantile(q float64) time.Duration { return quantile(w.lat, q) }

// quantile returns the q-quantile of sorted (nearest rank), or 0 when it is empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}
