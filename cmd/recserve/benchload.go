package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

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

// loadGen drives Recommend traffic over h2conns. In a closed loop (rate 0)
// each of workers requests in flight is followed by the next as soon as it
// is answered, on the connection's reader goroutine. In an open loop,
// requests are due at a fixed rate whatever the answers' speed and are sent
// when due while fewer than workers are in flight, else as soon as an answer
// frees a place; latency counts from when the request was due, so time spent
// waiting for a place is included (no coordinated omission).
type loadGen struct {
	users   int
	n       int32
	timeout time.Duration
	workers int     // requests in flight at most
	rate    float64 // requests per second; 0: closed loop
	// ranking, when set, is sent in every other rankCycle of the run (ranked).
	ranking   *recservev1.Ranking
	rankCycle time.Duration
	// newVersion, when set, is watched for: the first response from it is recorded.
	newVersion string
	firstNew   atomic.Int64 // completion time (ns since start) of the first such response, or 0
	conns      []*h2conn
	start      time.Time

	mu       sync.Mutex
	samples  sampleLog
	inflight int
	backlog  []int64 // due times of open-loop requests waiting for a place, oldest first
	stopping bool
	idle     chan struct{} // closed when stopping and nothing is in flight
	version  string        // the last version seen, shared by its samples
}

// dial opens n connections to the server at addr.
func (g *loadGen) dial(addr string, n int) error {
	for range n {
		c, err := dialH2(addr, recservev1.RecommendService_Recommend_FullMethodName, g.timeout, g.now, g.done)
		if err != nil {
			g.close()
			return err
		}
		g.conns = append(g.conns, c)
	}
	return nil
}

// close closes the connections, failing what is still in flight.
func (g *loadGen) close() {
	for _, c := range g.conns {
		c.close(codes.DeadlineExceeded)
	}
}

// run sends requests from start until ctx is done, waits up to the timeout
// for those in flight, closes the connections and returns every request's
// sample, by start time (ns since start).
func (g *loadGen) run(ctx context.Context, start time.Time) []sample {
	g.start, g.idle = start, make(chan struct{})
	if g.rate > 0 {
		g.schedule(ctx)
	} else {
		g.mu.Lock()
		g.inflight = g.workers
		g.mu.Unlock()
		for i := range g.workers {
			g.send(g.conns[i%len(g.conns)], -1, true)
		}
		<-ctx.Done()
	}
	g.mu.Lock()
	g.stopping, g.backlog = true, nil
	g.settle()
	g.mu.Unlock()
	select {
	case <-g.idle:
	case <-time.After(g.timeout + time.Second):
	}
	g.close()
	all := g.samples.all()
	slices.SortFunc(all, func(a, b sample) int { return cmp.Compare(a.at, b.at) })
	return all
}

// schedule makes request i due at start + i/rate until ctx is done. The
// requests that fell due while it waited go out together, in one write per
// connection.
func (g *loadGen) schedule(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := 0
	for i := 0.0; ; {
		for now := g.now(); ; i++ {
			at := int64(i * 1e9 / g.rate)
			if at > now {
				timer.Reset(time.Duration(at - now))
				break
			}
			g.mu.Lock()
			free := g.inflight < g.workers
			if free {
				g.inflight++
			} else {
				g.backlog = append(g.backlog, at)
			}
			g.mu.Unlock()
			if free {
				g.send(g.conns[next%len(g.conns)], at, false)
				next++
			}
		}
		for _, c := range g.conns {
			c.flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

func (g *loadGen) now() int64 { return time.Since(g.start).Nanoseconds() }

// ranked reports whether a request due at (ns since start) carries the ranking:
// in the odd cycles.
func (g *loadGen) ranked(at int64) bool { return at/g.rankCycle.Nanoseconds()%2 == 1 }

// send sends a request for a random user on c (see h2conn.send), due at at
// (-1: now, closed loop). A request that cannot be sent fails at once and
// gives up its place.
func (g *loadGen) send(c *h2conn, at int64, flush bool) {
	n := g.n
	req := &recservev1.RecommendRequest{UserId: benchUserID(rand.IntN(g.users)), N: &n}
	if g.ranking != nil && g.ranked(g.now()) {
		req.Ranking = g.ranking
	}
	// The message after gRPC's prefix: not compressed, and its length.
	msg, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, 5, 32), req)
	if err != nil {
		panic(err) // a RecommendRequest always marshals
	}
	binary.BigEndian.PutUint32(msg[1:5], uint32(len(msg)-5))
	sent := g.now()
	if at < 0 {
		at = sent
	}
	if err := c.send(at, sent, msg, flush); err != nil {
		g.mu.Lock()
		g.samples.add(sample{at: at, took: g.now() - at, lag: sent - at, code: codes.Unavailable})
		g.inflight--
		g.settle()
		g.mu.Unlock()
	}
}

// done records a finished call and, unless the load is stopping, sends the
// next request in its place: a new one (closed loop) or the oldest waiting.
func (g *loadGen) done(c *h2conn, cl *call) {
	t := g.now()
	s := sample{at: cl.at, took: t - cl.at, lag: cl.sent - cl.at, code: cl.code}
	var reply benchReply
	if s.code == codes.OK {
		if err := reply.decode(cl.msg); err != nil {
			s.code = codes.Internal
		} else {
			s.short = reply.items < int(g.n)
		}
	}
	g.mu.Lock()
	if s.code == codes.OK {
		if string(reply.version) != g.version {
			g.version = string(reply.version)
		}
		s.version = g.version
		if g.newVersion != "" && s.version == g.newVersion {
			g.firstNew.CompareAndSwap(0, t)
		}
	}
	g.samples.add(s)
	next := int64(-2) // none
	switch {
	case g.stopping:
	case g.rate == 0:
		next = -1
	case len(g.backlog) > 0:
		next, g.backlog = g.backlog[0], g.backlog[1:]
	}
	if next == -2 {
		g.inflight--
		g.settle()
	}
	g.mu.Unlock()
	if next != -2 {
		g.send(c, next, false) // c's reader flushes it
	}
}

// settle closes idle once the load is stopping and nothing is in flight;
// g.mu is held.
func (g *loadGen) settle() {
	if g.stopping && g.inflight == 0 {
		select {
		case <-g.idle:
		default:
			close(g.idle)
		}
	}
}

// sampleLog holds samples in chunks of fixed size, so adding one never copies
// those before it. A growing slice did, under loadGen.mu, at every 25% of
// growth: at 10,000 requests/s the copy of some 13 MB into fresh memory
// stalled the load generator for 10–20 ms at the same points of every run
// (BENCHMARKS.md, eleventh session), and the latencies it measured with it.
type sampleLog struct{ chunks [][]sample }

const sampleChunk = 1 << 14

func (l *sampleLog) add(s sample) {
	n := len(l.chunks)
	if n == 0 || len(l.chunks[n-1]) == sampleChunk {
		l.chunks = append(l.chunks, make([]sample, 0, sampleChunk))
		n++
	}
	l.chunks[n-1] = append(l.chunks[n-1], s)
}

// all returns the samples in the order they were added, in one new slice.
func (l *sampleLog) all() []sample { return slices.Concat(l.chunks...) }

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
	return summarizeWhere(samples, from, to, nil)
}

// summarizeWhere summarizes the samples that started in [from, to) at a time
// keep accepts (nil: every time); its seconds are those of [from, to).
func summarizeWhere(samples []sample, from, to int64, keep func(at int64) bool) window {
	w := window{errors: map[codes.Code]int{}, versions: map[string]int{}, seconds: float64(to-from) / 1e9}
	for _, s := range samples {
		if s.at < from || s.at >= to || keep != nil && !keep(s.at) {
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
