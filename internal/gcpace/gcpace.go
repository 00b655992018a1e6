// Package gcpace bounds how far the heap grows between garbage collections in
// bytes, not only as a percentage of what is live. A server's heap is mostly
// model data that stays live, so a percentage lets a large model's heap grow
// by hundreds of megabytes of request garbage before each collection, and
// every collection is followed by the runtime's background sweeper working
// through all of it on a processor of its own. With 1M items (1.56 GB live)
// at 10,000 requests/s, GOGC 25 let 390 MB pile up; the sweep after each
// collection took about 45 ms of CPU within 200 ms, and the 100 ms intervals
// around each collection had a p99 3–9 ms above the others. With 128 MiB of
// headroom: 1–3 ms above, 256 MiB less resident, no more CPU per request.
// The cost is in a version's load: it needs the room the percentage leaves
// (Hold), and the heap grows back into memory the runtime had returned to the
// kernel, on the serving goroutines: the p99 while a 1M version loaded was
// 17–104 ms (median 61) against 17–42 (median 27) with the percentage alone
// (BENCHMARKS.md, thirteenth session). So it is not the default.
package gcpace

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Percent returns the collection percentage that lets a heap of live bytes
// grow by about headroom bytes before the next collection: 100*headroom/live
// rounded up, at least 1 and at most most.
func Percent(live, headroom uint64, most int) int {
	if live == 0 {
		return most
	}
	p := (100*headroom + live - 1) / live
	return int(max(1, min(p, uint64(most))))
}

// Run sets the collector's percentage every interval until ctx is done, to
// Percent of the live heap the last collection found, the headroom, and the
// percentage in force when Run started (GOGC or debug.SetGCPercent) as the
// most; to the most while work holds it (Hold). With the collector off, or a
// headroom of 0, it does nothing. One Run at a time.
func Run(ctx context.Context, headroom uint64, interval time.Duration) {
	top := int(read("/gc/gogc:percent"))
	if headroom == 0 || top <= 0 {
		return
	}
	state.Lock()
	state.most = top
	state.Unlock()
	defer func() {
		state.Lock()
		state.most = 0
		debug.SetGCPercent(top)
		state.Unlock()
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		state.Lock()
		p := top
		if state.holds == 0 {
			p = Percent(read("/gc/heap/live:bytes"), headroom, top)
		}
		debug.SetGCPercent(p)
		state.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Hold sets the collector's percentage back to the most Run allows until
// release is called, for work that allocates much while data with pointers
// is live: a version's load keeps its ids as strings until its tables are
// built, and every collection then marks them all. Loading a 1M version with
// the headroom alone, several collections marked for 44–219 ms each; held,
// one marked for 51–75 ms, as one did (36–55 ms) before this package.
// Without Run it does nothing.
func Hold() (release func()) {
	state.Lock()
	state.holds++
	if state.most > 0 {
		debug.SetGCPercent(state.most)
	}
	state.Unlock()
	return func() {
		state.Lock()
		state.holds--
		state.Unlock()
	}
}

// state is what Run and Hold share.
var state struct {
	sync.Mutex
	most  int // the percentage Run started with; 0 while it does not run
	holds int // Hold calls not yet released
}

// read returns the runtime metric name, a uint64.
func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
