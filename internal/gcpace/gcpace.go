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
// A version's load needs no more room: it holds no pointer per id (see
// registry.Rows), so the collections it sets off have nothing of it to mark
// (BENCHMARKS.md, fourteenth session).
package gcpace

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
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
// most, which it restores when it returns. With the collector off, or a
// headroom of 0, it does nothing. One Run at a time.
func Run(ctx context.Context, headroom uint64, interval time.Duration) {
	top := int(read("/gc/gogc:percent"))
	if headroom == 0 || top <= 0 {
		return
	}
	defer debug.SetGCPercent(top)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		debug.SetGCPercent(Percent(read("/gc/heap/live:bytes"), headroom, top))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read returns the runtime metric name, a uint64.
func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
