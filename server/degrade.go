package server

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// degradation counts answers degraded by a failing dependency and logs them at
// most once per interval, so an outage does not flood the log.
type degradation struct {
	count atomic.Int64

	mu   sync.Mutex
	last time.Time
}

const degradeLogEvery = 10 * time.Second

func (d *degradation) report(log *slog.Logger, msg string, err error) {
	n := d.count.Add(1)
	d.mu.Lock()
	due := time.Since(d.last) >= degradeLogEvery
	if due {
		d.last = time.Now()
	}
	d.mu.Unlock()
	if due {
		log.Warn(msg, "err", err, "degraded_total", n)
	}
}

// Degraded returns how many answers were degraded by a failing dependency.
func (s *Server) Degraded() int64 { return s.degraded.count.Load() }
