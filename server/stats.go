package server

import (
	"math"
	"sync"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Per-version live metrics: cumulative counters (the rollout judge compares
// them against a baseline taken when a step starts) and a ring of time buckets
// for the sliding-window view the admin API shows.
const (
	statBucket   = 10 * time.Second
	statBuckets  = 60 // a 10-minute window
	latencyBins  = 48 // bin i holds latencies below 2^((i+1)/2) µs
	maxDedupeIDs = 1 << 20
)

// counts is one set of counters.
type counts struct {
	requests, errors                 int64
	impressions, clicks, conversions int64
	shadows                          int64
	shadowOverlap                    float64
	latency                          [latencyBins]int64
}

func (c *counts) add(o *counts) {
	c.requests += o.requests
	c.errors += o.errors
	c.impressions += o.impressions
	c.clicks += o.clicks
	c.conversions += o.conversions
	c.shadows += o.shadows
	c.shadowOverlap += o.shadowOverlap
	for i := range c.latency {
		c.latency[i] += o.latency[i]
	}
}

func (c *counts) sub(o *counts) counts {
	d := *c
	d.requests -= o.requests
	d.errors -= o.errors
	d.impressions -= o.impressions
	d.clicks -= o.clicks
	d.conversions -= o.conversions
	d.shadows -= o.shadows
	d.shadowOverlap -= o.shadowOverlap
	for i := range d.latency {
		d.latency[i] -= o.latency[i]
	}
	return d
}

func latencyBin(d time.Duration) int {
	us := float64(d.Microseconds())
	if us < 1 {
		return 0
	}
	b := int(2 * math.Log2(us))
	return min(max(b, 0), latencyBins-1)
}

// p99 returns the upper bound of the bin holding the 99th percentile, in ms.
func (c *counts) p99() float64 {
	var total int64
	for _, n := range c.latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(0.99 * float64(total)))
	var seen int64
	for i, n := range c.latency {
		seen += n
		if seen >= rank {
			return math.Pow(2, float64(i+1)/2) / 1000
		}
	}
	return 0
}

func (c *counts) proto() *recservev1.VersionMetrics {
	m := &recservev1.VersionMetrics{
		Requests: c.requests, Errors: c.errors, P99LatencyMs: c.p99(),
		Impressions: c.impressions, Clicks: c.clicks, Conversions: c.conversions, ShadowRequests: c.shadows,
	}
	if c.requests > 0 {
		m.ErrorRate = float64(c.errors) / float64(c.requests)
	}
	if c.impressions > 0 {
		m.Ctr = float64(c.clicks) / float64(c.impressions)
		m.ConversionRate = float64(c.conversions) / float64(c.impressions)
	}
	if c.shadows > 0 {
		m.ShadowOverlap = c.shadowOverlap / float64(c.shadows)
	}
	return m
}

// versionStats are the counters of one model version.
type versionStats struct {
	mu     sync.Mutex
	total  counts
	ring   [statBuckets]counts
	ringAt [statBuckets]int64 // bucket start (unix ns / statBucket) each slot holds
}

func (v *versionStats) update(now time.Time, f func(c *counts)) {
	slot := now.UnixNano() / int64(statBucket)
	i := slot % statBuckets
	v.mu.Lock()
	if v.ringAt[i] != slot {
		v.ring[i] = counts{}
		v.ringAt[i] = slot
	}
	f(&v.ring[i])
	f(&v.total)
	v.mu.Unlock()
}

// window sums the buckets of the last statBuckets*statBucket.
func (v *versionStats) window(now time.Time) counts {
	slot := now.UnixNano() / int64(statBucket)
	var sum counts
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.ring {
		if slot-v.ringAt[i] < statBuckets {
			sum.add(&v.ring[i])
		}
	}
	return sum
}

func (v *versionStats) cumulative() counts {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.total
}

// stats holds versionStats by "model/version" and deduplicates feedback events.
type stats struct {
	mu       sync.Mutex
	versions map[versionKey]*versionStats
	eventIDs map[string]struct{}
	idOrder  []string
}

func newStats() *stats {
	return &stats{versions: map[versionKey]*versionStats{}, eventIDs: map[string]struct{}{}}
}

// versionKey names a model version without building a string per request.
type versionKey struct{ model, version string }

func (s *stats) of(model, version string) *versionStats {
	key := versionKey{model, version}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.versions[key]
	if v == nil {
		v = &versionStats{}
		s.versions[key] = v
	}
	return v
}

// firstTime reports whether an event id is new, remembering the most recent ids.
func (s *stats) firstTime(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.eventIDs[id]; dup {
		return false
	}
	if len(s.idOrder) >= maxDedupeIDs {
		delete(s.eventIDs, s.idOrder[0])
		s.idOrder = s.idOrder[1:]
	}
	s.eventIDs[id] = struct{}{}
	s.idOrder = append(s.idOrder, id)
	return true
}

func (s *stats) request(model, version string, now time.Time, took time.Duration, failed bool) {
	bin := latencyBin(took)
	s.of(model, version).update(now, func(c *counts) {
		c.requests++
		if failed {
			c.errors++
		}
		c.latency[bin]++
	})
}

func (s *stats) shadow(model, version string, now time.Time, overlap float64) {
	s.of(model, version).update(now, func(c *counts) {
		c.shadows++
		c.shadowOverlap += overlap
	})
}

// feedback counts an event against the version that produced the recommendation.
func (s *stats) feedback(model, version string, now time.Time, t recservev1.EventType) {
	var f func(c *counts)
	switch t {
	case recservev1.EventType_EVENT_TYPE_IMPRESSION:
		f = func(c *counts) { c.impressions++ }
	case recservev1.EventType_EVENT_TYPE_CLICK:
		f = func(c *counts) { c.clicks++ }
	case recservev1.EventType_EVENT_TYPE_ADD_TO_CART, recservev1.EventType_EVENT_TYPE_PURCHASE:
		f = func(c *counts) { c.conversions++ }
	default:
		return
	}
	s.of(model, version).update(now, f)
}
