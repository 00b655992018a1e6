package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/internal/telemetry"
)

// trainerMetrics are the trainer's instruments, named in deploy/METRICS.md.
type trainerMetrics struct {
	duration metric.Float64Histogram // recserve_training_duration_seconds{model,result}
	stored   metric.Int64Counter     // recserve_trainer_events_stored_total

	mu      sync.Mutex
	model   string
	version string             // the last published version
	results map[string]float64 // its manifest's metrics
}

func newTrainerMetrics(m metric.Meter, countUntrained func() int64) (*trainerMetrics, error) {
	var tm trainerMetrics
	var errs [5]error
	tm.duration, errs[0] = m.Float64Histogram("recserve_training_duration_seconds",
		metric.WithDescription("time to train and publish a version from the event log"),
		metric.WithExplicitBucketBoundaries(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600))
	tm.stored, errs[1] = m.Int64Counter("recserve_trainer_events_stored_total",
		metric.WithDescription("events stored durably in the trainer's event log (duplicates left out)"))
	untrained, err := m.Int64ObservableGauge("recserve_trainer_untrained_events",
		metric.WithDescription("stored events that no published version was trained on"))
	errs[2] = err
	results, err := m.Float64ObservableGauge("recserve_trained_model_metric",
		metric.WithDescription("metrics in the manifest of the last version the trainer published (val_recall, val_ndcg, train_seconds, events, interactions)"))
	errs[3] = err
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	_, errs[4] = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(untrained, countUntrained())
		tm.mu.Lock()
		defer tm.mu.Unlock()
		for name, v := range tm.results {
			o.ObserveFloat64(results, v, metric.WithAttributes(attribute.String("model", tm.model),
				attribute.String("version", tm.version), attribute.String("metric", name)))
		}
		return nil
	}, untrained, results)
	return &tm, errs[4]
}

// trained records one training: how long it took and, when it published, the
// version and its metrics.
func (tm *trainerMetrics) trained(model string, took time.Duration, version string, results map[string]float64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	tm.duration.Record(context.Background(), took.Seconds(), metric.WithAttributes(
		attribute.String("model", model), attribute.String("result", result)))
	if err == nil && version != "" {
		tm.mu.Lock()
		tm.model, tm.version, tm.results = model, version, results
		tm.mu.Unlock()
	}
}

// serveTrainerMetrics serves /metrics of tel on addr until ctx is done, with
// the lag of the consumer group and of the more groups (the catalog topic's)
// read from brokers.
func serveTrainerMetrics(ctx context.Context, log *slog.Logger, addr string, tel *telemetry.Telemetry, cc events.ConsumerConfig, more ...string) error {
	lag, err := events.NewLagReader(cc.Brokers)
	if err != nil {
		return err
	}
	for _, g := range append([]string{cc.Group}, more...) {
		if err := telemetry.ObserveConsumerLag(tel.Meter(), lag, g); err != nil {
			lag.Close()
			return err
		}
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		lag.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		lag.Close()
	}()
	go func() {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Error("trainer metrics server stopped", "err", err)
		}
	}()
	log.Info("trainer metrics", "addr", lis.Addr().String())
	return nil
}
