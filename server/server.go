// Package server serves recommendations over gRPC from the model versions in a registry.
//
// A Server loads the newest complete version of each model at start, polls the
// registry and hot-swaps to newer versions: load, build the index, warm up, then
// swap atomically. Requests in flight keep the snapshot they started with.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"go.opentelemetry.io/otel/metric"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// Options configure a Server. The zero value of every field but Registry is usable.
type Options struct {
	// Registry holds the model versions to serve.
	Registry registry.Store
	// Models restricts serving to these models; empty serves every model in the registry.
	Models []string
	// DefaultModel answers requests that name no model; empty means the only served model.
	DefaultModel string
	// Index configures the item index built for every version.
	Index index.Options
	// PollInterval is how often the registry is checked for new versions (default 2s).
	PollInterval time.Duration
	// Logger receives operational logs (default slog.Default()).
	Logger *slog.Logger
	// Online is the real-time state (recent items, seen sets, response cache). Nil
	// serves from the model alone.
	Online OnlineStore
	// CacheTTL is how long Recommend responses are cached in Online (default 30s;
	// negative disables the cache). An event of the user invalidates them.
	CacheTTL time.Duration
	// Events receives RecordEvents batches. Nil makes RecordEvents FAILED_PRECONDITION.
	Events EventSink
	// Catalog receives catalog changes (the catalog topic), which the server
	// applies when it consumes them (ApplyCatalog). Nil applies them at once.
	Catalog CatalogSink
	// CatalogStore persists the run-time catalog (nil: kept in memory only).
	CatalogStore CatalogStore
	// RefoldInterval is how often added items' vectors are folded in again
	// from their interactions (default 2s); events of this server's own
	// consumer about an added item fold it in at once.
	RefoldInterval time.Duration
	// KeepVersions is how many of the newest versions of each model stay loaded
	// (default 2), besides pinned and labelled ones.
	KeepVersions int
	// MemoryLimit is the memory in bytes the process may use (0: no check). A
	// new version whose load would take the process past nine tenths of it
	// (the rest is left for requests and collections) is not loaded but tried
	// again on every refresh, and memory is not set aside for a version beyond
	// it: the served versions keep serving instead of the process being
	// killed for memory. The check expects a new version to take as much as
	// the model's newest loaded one, so a model's first version is not checked.
	MemoryLimit int64
	// Clock returns the time (default time.Now); tests drive rollouts with it.
	Clock func() time.Time
	// Meter records the metrics of deploy/METRICS.md (default: none).
	Meter metric.Meter
}

// OnlineStore is the real-time state the server reads and the event consumer writes
// (package online implements it over Redis and in memory).
type OnlineStore interface {
	Record(ctx context.Context, evs []*recservev1.Event) (int, error)
	// Users returns the states of users, in their order.
	Users(ctx context.Context, users []string) ([]online.User, error)
	CacheGet(ctx context.Context, key string) ([]byte, bool, error)
	CacheSet(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// ItemUsers returns the users who interacted with each item recently.
	ItemUsers(ctx context.Context, items []string) ([][]online.ItemUser, error)
	// EraseUser removes everything the store holds about a user.
	EraseUser(ctx context.Context, user string) error
}

// EventSink durably accepts events (package events implements it over Kafka).
type EventSink interface {
	Produce(ctx context.Context, evs []*recservev1.Event) error
}

// Server implements recserve.v1.RecommendService.
type Server struct {
	recservev1.UnimplementedRecommendServiceServer

	opts   Options
	log    *slog.Logger
	models *models
	health *health.Server

	reqPrefix string
	reqSeq    atomic.Uint64
	degraded  throttled // answers degraded by a failing dependency
	failures  throttled // requests that failed on the server's side
	stats     *stats
	shadows   sync.WaitGroup
	shadowSem chan struct{}
	baselines baselines
	kick      chan struct{} // asks Run for an early refresh
	metrics   *instruments
	catalog   *liveCatalog
	refold    chan struct{} // asks for added items to be folded in again
	exposure  *exposure     // items' impressions and clicks, for exploration
}

// New returns a Server that serves nothing until Start or Run has loaded a version.
func New(opts Options) (*Server, error) {
	if opts.Registry == nil {
		return nil, errors.New("server: Options.Registry is required")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = 30 * time.Second
	}
	if opts.KeepVersions <= 0 {
		opts.KeepVersions = 2
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.RefoldInterval <= 0 {
		opts.RefoldInterval = 2 * time.Second
	}
	var p [6]byte
	if _, err := rand.Read(p[:]); err != nil {
		return nil, fmt.Errorf("server: request id prefix: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, health: health.NewServer(), reqPrefix: hex.EncodeToString(p[:]), stats: newStats(), shadowSem: make(chan struct{}, maxShadows), kick: make(chan struct{}, 1)}
	s.catalog, s.refold, s.exposure = newLiveCatalog(), make(chan struct{}, 1), newExposure()
	s.models = newModels(opts, s.updateHealth)
	s.models.attach = s.catalog.attach
	s.models.onAdopt = s.resetBaseline
	var err error
	if s.metrics, err = newInstruments(opts.Meter, s); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.updateHealth()
	return s, nil
}

// Health is the grpc.health.v1 service; it reports NOT_SERVING until a model is loaded.
func (s *Server) Health() *health.Server { return s.health }

// Refresh loads newer versions from the registry once. Errors name the versions that
// could not be loaded; whatever was served before keeps serving.
func (s *Server) Refresh(ctx context.Context) error { return s.models.refresh(ctx) }

// Run refreshes now and then every PollInterval until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	var refolds sync.WaitGroup
	refolds.Go(func() { s.refoldLoop(ctx, s.opts.RefoldInterval) })
	defer refolds.Wait()
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("registry refresh", "err", err)
		}
		s.evaluateRollouts(s.opts.Clock())
		select {
		case <-ctx.Done():
			s.shadows.Wait()
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// refreshSoon asks Run to refresh now, for example to load a version a label names.
func (s *Server) refreshSoon() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// resetBaseline starts a model's rollout comparison from the current counters.
func (s *Server) resetBaseline(model string) {
	v, ok := s.models.get(model)
	st := s.models.state(model)
	if !ok || st.Canary == "" {
		return
	}
	s.baselines.set(model, [2]counts{s.stats.of(model, v.stable.version).cumulative(), s.stats.of(model, st.Canary).cumulative()})
}

// ObserveEvents counts feedback events (impressions, clicks, conversions) against
// the model version that produced the recommendation, once per event id, and
// each item's impressions and clicks (purchases count as clicks) per model, for
// exploration: the event's model, or the default one.
func (s *Server) ObserveEvents(evs []*recservev1.Event) {
	if s.touchesAdded(evs) {
		s.kickRefold()
	}
	now := s.opts.Clock()
	for _, e := range evs {
		exposure := countsExposure(e.GetType()) && e.GetItemId() != ""
		if e.GetModelVersion() == "" && !exposure || !s.stats.firstTime(e.GetEventId()) {
			continue
		}
		model := e.GetModel()
		if model == "" {
			v, err := s.view("")
			if err != nil {
				continue
			}
			model = v.name
		}
		if exposure {
			s.exposure.observe(model, e)
		}
		if e.GetModelVersion() != "" {
			s.stats.feedback(model, e.GetModelVersion(), now, e.GetType())
		}
	}
}

// Shutdown marks the server NOT_SERVING so that load balancers drain it.
func (s *Server) Shutdown() { s.health.Shutdown() }

// HealthDetails lists what the server works around: versions it could not load
// and labels waiting for versions that are not loaded.
func (s *Server) HealthDetails() []string {
	var out []string
	for key, why := range s.models.failures() {
		out = append(out, "load_error "+key+": "+why)
	}
	for _, name := range s.models.names() {
		for _, w := range s.models.waitingFor(name) {
			out = append(out, "waiting "+name+" "+w)
		}
	}
	slices.Sort(out)
	return out
}

// Served returns the stable version served for each model.
func (s *Server) Served() map[string]string {
	out := map[string]string{}
	for _, name := range s.models.names() {
		v, _ := s.models.get(name)
		out[name] = v.stable.version
	}
	return out
}

func (s *Server) updateHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if _, err := s.view(""); err == nil {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(recservev1.RecommendService_ServiceDesc.ServiceName, st)
}

// view resolves a request's model name to the model's routing view.
func (s *Server) view(model string) (*view, error) {
	if model == "" {
		model = s.opts.DefaultModel
	}
	if model == "" {
		served := *s.models.served.Load() // not names(): it allocates and sorts
		switch len(served) {
		case 0:
			return nil, errNotReady
		case 1:
			for _, v := range served {
				return v, nil
			}
		default:
			return nil, badField("model", "required: this server serves %d models", len(served))
		}
	}
	v, ok := s.models.get(model)
	if !ok {
		if len(s.models.names()) == 0 {
			return nil, errNotReady
		}
		return nil, &notFound{field: "model", value: model, err: errModelNotFound}
	}
	return v, nil
}

// route resolves a request to the snapshot that serves it.
func (s *Server) route(model, user, version string) (*view, *snapshot, error) {
	v, err := s.view(model)
	if err != nil {
		return nil, nil, err
	}
	snap, err := v.route(user, version)
	if err != nil {
		return nil, nil, err
	}
	return v, snap, nil
}

func (s *Server) requestID() string {
	return s.reqPrefix + "-" + strconv.FormatUint(s.reqSeq.Add(1), 36)
}
