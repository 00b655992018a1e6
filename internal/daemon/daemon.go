// Package daemon wires the serving components — registry watcher, gRPC server and
// REST gateway — into one process with a shared lifecycle. cmd/recserve and the
// end-to-end tests both start the daemon through Run.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/gateway"
	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/internal/telemetry"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/server"
)

// Config is what the serve command configures.
type Config struct {
	Registry     string // a directory or s3://bucket/prefix (registry.OpenURL)
	GRPCAddr     string // default 127.0.0.1:9090
	HTTPAddr     string // default 127.0.0.1:8080; "off" disables the gateway
	Models       []string
	DefaultModel string
	Index        index.Options
	PollInterval time.Duration
	// MemoryLimit in bytes: no version is loaded that would take the process
	// past nine tenths of it (server.Options.MemoryLimit); 0 checks nothing.
	MemoryLimit int64
	// ShutdownTimeout bounds the graceful stop (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger

	// RedisAddr holds the real-time state and response cache; empty keeps them in process.
	RedisAddr string
	// CacheTTL of Recommend responses (default 30s, negative disables).
	CacheTTL time.Duration
	// KafkaBrokers carry the event stream. Empty with EmbeddedKafka starts an
	// in-process broker; empty without it disables RecordEvents and real-time updates.
	KafkaBrokers  []string
	EmbeddedKafka bool
	// EmbeddedKafkaAddr is where the embedded broker listens (host:port;
	// empty: a free loopback port).
	EmbeddedKafkaAddr string
	// Topic of interaction events (default "interactions").
	Topic string
	// CatalogTopic carries catalog changes and user erasures (default "catalog").
	CatalogTopic string
	// CatalogDir keeps the run-time catalog in a local file when there is no
	// Redis (RedisAddr); empty keeps it in memory only.
	CatalogDir string
	// Security: TLS, authentication, rate and in-flight limits.
	Security Security
	// TracerProvider receives spans of REST requests, gRPC calls (server and the
	// gateway's client side) with W3C trace context propagated between them; nil
	// records none.
	TracerProvider trace.TracerProvider
}

// Addrs are the addresses the daemon listens on, known once it is up.
type Addrs struct {
	GRPC string
	HTTP string
	// Kafka lists the brokers in use (the embedded one's address when it runs).
	Kafka []string
}

// Run serves until ctx is done, then stops gracefully: health NOT_SERVING, stop
// accepting, finish requests in flight within ShutdownTimeout. ready, if not nil,
// receives the listen addresses once the first registry refresh has finished.
func Run(ctx context.Context, cfg Config, ready func(Addrs)) error {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:9090"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Topic == "" {
		cfg.Topic = "interactions"
	}
	if cfg.CatalogTopic == "" {
		cfg.CatalogTopic = events.DefaultCatalogTopic
	}
	log := cfg.Logger
	sec, err := cfg.Security.build(log)
	if err != nil {
		return err
	}
	reg, err := registry.OpenURL(ctx, cfg.Registry)
	if err != nil {
		return err
	}
	defer reg.Close()
	tel, err := telemetry.New()
	if err != nil {
		return err
	}
	defer tel.Close()
	rt, err := startRealtime(cfg)
	if err != nil {
		return err
	}
	defer rt.close()
	if err := rt.observeLag(tel.Meter()); err != nil {
		return err
	}
	srv, err := server.New(server.Options{
		Registry: reg, Models: cfg.Models, DefaultModel: cfg.DefaultModel,
		Index: cfg.Index, PollInterval: cfg.PollInterval, Logger: log, MemoryLimit: cfg.MemoryLimit,
		Online: rt.store, CacheTTL: cfg.CacheTTL, Events: rt.sink(), Meter: tel.Meter(),
		Catalog: rt.catalogSink(), CatalogStore: rt.catalog,
	})
	if err != nil {
		return err
	}
	if err := srv.LoadCatalog(ctx); err != nil {
		return fmt.Errorf("load the run-time catalog: %w", err)
	}
	if err := srv.Refresh(ctx); err != nil {
		log.Warn("initial registry load", "err", err)
	}

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	tp := cfg.TracerProvider
	prop := propagation.TraceContext{}
	tracing := grpc.ChainUnaryInterceptor(traceContextUnary)
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	} else {
		tracing = grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))
	}
	g := server.NewGRPCServer(srv, append([]grpc.ServerOption{tracing}, sec.grpcOpts...)...)

	var httpSrv *http.Server
	var httpLis net.Listener
	var conn *grpc.ClientConn
	if cfg.HTTPAddr != "off" {
		conn, err = grpc.NewClient(sec.gatewayTarget(grpcLis), grpc.WithTransportCredentials(sec.gateway),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))))
		if err != nil {
			grpcLis.Close()
			return fmt.Errorf("gateway client: %w", err)
		}
		defer conn.Close()
		h, err := gateway.New(ctx, conn, srv.HealthDetails)
		if err != nil {
			grpcLis.Close()
			return err
		}
		if httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			grpcLis.Close()
			return fmt.Errorf("http listen: %w", err)
		}
		root := http.NewServeMux()
		root.Handle("GET /metrics", tel.Handler())
		root.Handle("/", h)
		traced := otelhttp.NewHandler(root, "recserve-gateway", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop))
		httpSrv = &http.Server{Handler: traced, ReadHeaderTimeout: 5 * time.Second, TLSConfig: sec.serverTLS,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	running := 0
	start := func(name string, fn func() error) {
		running++
		go func() {
			err := fn()
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			errc <- err
		}()
	}
	start("registry watcher", func() error { return srv.Run(runCtx) })
	start("grpc", func() error { return g.Serve(grpcLis) })
	if len(rt.brokers) > 0 {
		start("event consumer", func() error { return rt.consume(runCtx, log, srv) })
		start("catalog consumer", func() error { return rt.consumeCatalog(runCtx, log, srv) })
	}
	addrs := Addrs{GRPC: grpcLis.Addr().String(), Kafka: rt.brokers}
	if httpSrv != nil {
		addrs.HTTP = httpLis.Addr().String()
		start("http", func() error {
			serve := func() error { return httpSrv.Serve(httpLis) }
			if sec.serverTLS != nil {
				serve = func() error { return httpSrv.ServeTLS(httpLis, "", "") }
			}
			if err := serve(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("serving", "grpc", addrs.GRPC, "http", addrs.HTTP, "models", srv.Served(), "memory_limit_mib", cfg.MemoryLimit>>20)
	if ready != nil {
		ready(addrs)
	}

	var firstErr error
	select {
	case <-ctx.Done():
	case firstErr = <-errc:
		running--
	}

	// Graceful stop: drain, then force after the deadline.
	srv.Shutdown()
	cancel()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer stopCancel()
	if httpSrv != nil {
		_ = httpSrv.Shutdown(stopCtx)
	}
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-stopCtx.Done():
		g.Stop()
	}
	for ; running > 0; running-- {
		if err := <-errc; err != nil && firstErr == nil && !errors.Is(err, context.Canceled) {
			firstErr = err
		}
	}
	return firstErr
}
