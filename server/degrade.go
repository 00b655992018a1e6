package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// throttled counts occurrences of one kind of trouble (answers degraded by a
// failing dependency, requests that failed on the server's side) and logs
// them at most once per interval, so an outage does not flood the log.
type throttled struct {
	count atomic.Int64

	mu   sync.Mutex
	last time.Time
}

const throttleLogEvery = 10 * time.Second

// report counts one occurrence and logs it, with the count so far, unless
// another was logged within the interval.
func (d *throttled) report(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	n := d.count.Add(1)
	d.mu.Lock()
	due := time.Since(d.last) >= throttleLogEvery
	if due {
		d.last = time.Now()
	}
	d.mu.Unlock()
	if due {
		log.WarnContext(ctx, msg, append(args, "count_total", n)...)
	}
}

// Degraded returns how many answers were degraded by a failing dependency.
func (s *Server) Degraded() int64 { return s.degraded.count.Load() }
