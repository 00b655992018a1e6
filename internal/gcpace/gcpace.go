// Package gcpace bounds how far the heap grows between garbage collections in
// bytes, not only as a percentage of what is live. A server's heap is mostly
// model data that stays live, so a percentage lets a large model's heap grow
// by hundreds of megabytes of request garbage before each collection, and
// every collection is followed by the runtime's background sweeper working
// through all of it on a processor of its own. With 1M items (1.56 GB live)
// at 10,000 requests/s, GOGC 25 let 390 MB pile up; the sweep after each
// collection took about 45 ms of CPU within 200 ms and raised the p99 of the
// 100 ms intervals around it by 4–5 ms, where GOGC 6 raised it by 1–1.4 ms,
// held 300 MiB less, and cost no measurable CPU (BENCHMARKS.md, thirteenth
// session).
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
// most. With the collector off, or a headroom of 0, it does nothing.
func Run(ctx context.Context, headroom uint64, interval time.Duration) {
	most := int(read("/gc/gogc:percent"))
	if headroom == 0 || most <= 0 {
		return
	}
	defer debug.SetGCPercent(most)
	t := time.NewTicker(interval)
	defer t.Stop()
	last := most
	for {
		if p := Percent(read("/gc/heap/live:bytes"), headroom, most); p != last {
			debug.SetGCPercent(p)
			last = p
		}
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
