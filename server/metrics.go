package server

import (
	"context"
	"path"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Metric names and labels follow deploy/METRICS.md; the Prometheus exporter adds
// the _total and _seconds suffixes.

// instruments are the server's metrics.
type instruments struct {
	requests   metric.Int64Counter
	duration   metric.Float64Histogram
	cacheReqs  metric.Int64Counter
	cacheHits  metric.Int64Counter
	eventsIngr metric.Int64Counter
	attrs      attrCache
}

// DurationBuckets are the request latency histogram's bucket bounds in seconds.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func newInstruments(m metric.Meter, s *Server) (*instruments, error) {
	if m == nil {
		m = noop.NewMeterProvider().Meter("recserve")
	}
	var in instruments
	var err error
	if in.requests, err = m.Int64Counter("recserve_requests", metric.WithDescription("gRPC requests handled")); err != nil {
		return nil, err
	}
	if in.duration, err = m.Float64Histogram("recserve_request_duration", metric.WithUnit("s"),
		metric.WithDescription("time from receiving a request to sending its response"),
		metric.WithExplicitBucketBoundaries(DurationBuckets...)); err != nil {
		return nil, err
	}
	if in.cacheReqs, err = m.Int64Counter("recserve_cache_requests", metric.WithDescription("response-cache lookups")); err != nil {
		return nil, err
	}
	if in.cacheHits, err = m.Int64Counter("recserve_cache_hits", metric.WithDescription("response-cache lookups that found the response")); err != nil {
		return nil, err
	}
	if in.eventsIngr, err = m.Int64Counter("recserve_events_ingested", metric.WithDescription("events acknowledged by the broker")); err != nil {
		return nil, err
	}
	loaded, err := m.Int64ObservableGauge("recserve_models_loaded", metric.WithDescription("models with a loaded version that can serve"))
	if err != nil {
		return nil, err
	}
	info, err := m.Int64ObservableGauge("recserve_model_version_info", metric.WithDescription("1 for each loaded version"))
	if err != nil {
		return nil, err
	}
	age, err := m.Float64ObservableGauge("recserve_model_version_age", metric.WithUnit("s"), metric.WithDescription("time since each loaded version was published"))
	if err != nil {
		return nil, err
	}
	indexed, err := m.Int64ObservableGauge("recserve_index_items", metric.WithDescription("items in each loaded version's retrieval index"))
	if err != nil {
		return nil, err
	}
	memLimit, err := m.Int64ObservableGauge("recserve_memory_limit_bytes", metric.WithDescription("the memory limit the server loads versions under (Options.MemoryLimit); absent without one"))
	if err != nil {
		return nil, err
	}
	failures, err := m.Int64ObservableGauge("recserve_model_load_failures", metric.WithDescription("versions that could not be loaded (corrupt, unreadable or over the memory limit); the served ones keep serving"))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		names := s.models.names()
		o.ObserveInt64(loaded, int64(len(names)))
		perModel := map[string]int64{}
		for key := range s.models.failures() {
			model, _, _ := strings.Cut(key, "/")
			perModel[model]++
		}
		for model, n := range perModel {
			o.ObserveInt64(failures, n, metric.WithAttributes(attribute.String("model", model)))
		}
		now := time.Now()
		for _, name := range names {
			v, _ := s.models.get(name)
			for ver, snap := range v.loaded {
				role := ""
				switch {
				case snap == v.stable:
					role = "stable"
				case snap == v.canary:
					role = "canary"
				}
				o.ObserveInt64(info, 1, metric.WithAttributes(attribute.String("model", name), attribute.String("version", ver), attribute.String("role", role)))
				version := metric.WithAttributes(attribute.String("model", name), attribute.String("version", ver))
				o.ObserveFloat64(age, now.Sub(snap.bundle.Manifest.CreatedAt).Seconds(), version)
				o.ObserveInt64(indexed, int64(snap.items.Len()), version)
			}
		}
		if s.opts.MemoryLimit > 0 {
			o.ObserveInt64(memLimit, s.opts.MemoryLimit)
		}
		return nil
	}, loaded, info, age, indexed, failures, memLimit)
	return &in, err
}

// servedBy carries, through a request's context, the version that served it.
type servedBy struct{ model, version string }

type servedKey struct{}

// markServed records which snapshot answered the request in ctx.
func markServed(ctx context.Context, snap *snapshot) {
	if s, ok := ctx.Value(servedKey{}).(*servedBy); ok {
		s.model, s.version = snap.model, snap.version
	}
}

// measureUnary counts and times every RPC by method, status code and the model
// version that served it.
func (s *Server) measureUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	by := &servedBy{}
	resp, err := handler(context.WithValue(ctx, servedKey{}, by), req)
	c := status.Code(err)
	a := s.metrics.attrs.get(attrKey{info.FullMethod, by.model, by.version, c})
	s.metrics.duration.Record(ctx, time.Since(start).Seconds(), a.duration)
	s.metrics.requests.Add(ctx, 1, a.requests)
	switch c {
	case codes.Internal, codes.Unknown, codes.Unavailable, codes.DataLoss:
		s.failures.report(ctx, s.log, "request failed", "rpc", path.Base(info.FullMethod), "code", c.String(), "err", err)
	}
	return resp, err
}

// attrKey is what the request metrics are labelled with.
type attrKey struct {
	method, model, version string
	code                   codes.Code
}

// reqAttrs are the prepared attribute sets of one attrKey.
type reqAttrs struct{ duration, requests metric.MeasurementOption }

// maxAttrSets bounds attrCache; beyond it sets are built per request.
const maxAttrSets = 4096

// attrCache keeps the attribute sets of the request metrics, which otherwise
// cost several allocations and a sort per request.
type attrCache struct {
	mu   sync.RWMutex
	sets map[attrKey]reqAttrs
}

func (c *attrCache) get(k attrKey) reqAttrs {
	c.mu.RLock()
	a, ok := c.sets[k]
	c.mu.RUnlock()
	if ok {
		return a
	}
	rpc := path.Base(k.method)
	model, version := attribute.String("model", k.model), attribute.String("version", k.version)
	a = reqAttrs{
		duration: metric.WithAttributeSet(attribute.NewSet(attribute.String("rpc", rpc), model, version)),
		requests: metric.WithAttributeSet(attribute.NewSet(attribute.String("rpc", rpc),
			attribute.String("code", code.Code_name[int32(k.code)]), model, version)),
	}
	c.mu.Lock()
	if c.sets == nil {
		c.sets = map[attrKey]reqAttrs{}
	}
	if len(c.sets) < maxAttrSets {
		c.sets[k] = a
	}
	c.mu.Unlock()
	return a
}

// countEvents counts acknowledged events by type ("purchase").
func (s *Server) countEvents(ctx context.Context, evs []*recservev1.Event) {
	byType := map[recservev1.EventType]int64{}
	for _, e := range evs {
		byType[e.GetType()]++
	}
	for t, n := range byType {
		s.metrics.eventsIngr.Add(ctx, n, metric.WithAttributes(attribute.String("type", events.TypeName(t))))
	}
}
