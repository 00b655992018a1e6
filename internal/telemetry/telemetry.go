// Package telemetry is the metrics pipeline of recserve's processes:
// OpenTelemetry instruments exported in the Prometheus text format, with the Go
// runtime and process metrics, and the consumer-lag gauge the server and the
// trainer share.
package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/recserve/recserve/events"
)

// Telemetry is one process's metrics: a meter for instruments and the /metrics
// handler that exports them.
type Telemetry struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// New makes the pipeline. Close it when done.
func New() (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	return &Telemetry{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// Meter returns the meter of recserve's instruments.
func (t *Telemetry) Meter() metric.Meter { return t.provider.Meter("github.com/recserve/recserve") }

// Handler serves the metrics in the Prometheus text format.
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Close stops the pipeline.
func (t *Telemetry) Close() { _ = t.provider.Shutdown(context.Background()) }

// ObserveConsumerLag exports group's lag, read from the brokers at each
// collection, as recserve_consumer_lag{group,topic,partition}.
func ObserveConsumerLag(m metric.Meter, r *events.LagReader, group string) error {
	g, err := m.Int64ObservableGauge("recserve_consumer_lag", metric.WithDescription("records between the group's committed offset and the partition end"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		lags, err := r.Lag(ctx, group)
		if err != nil {
			return nil // the broker is away: no sample rather than a failed scrape
		}
		for _, l := range lags {
			o.ObserveInt64(g, l.Lag, metric.WithAttributes(attribute.String("group", group),
				attribute.String("topic", l.Topic), attribute.String("partition", strconv.Itoa(int(l.Partition)))))
		}
		return nil
	}, g)
	return err
}
