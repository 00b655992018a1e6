package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/redis/go-redis/v9"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/internal/telemetry"
	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/server"
)

// realtime is the event path of a serving process: the producer behind
// RecordEvents, and the consumer that applies events to the online store.
type realtime struct {
	store    server.OnlineStore
	redis    *online.Redis
	embedded *events.Embedded
	producer *events.Producer
	brokers  []string
	topic    string
	group    string
	catTopic string
	catalog  server.CatalogStore
	closers  []func() error
	lag      *events.LagReader
	tracing  trace.TracerProvider
}

func startRealtime(cfg Config) (*realtime, error) {
	rt := &realtime{brokers: cfg.KafkaBrokers, topic: cfg.Topic, catTopic: cfg.CatalogTopic, tracing: cfg.TracerProvider}
	if cfg.RedisAddr != "" {
		rt.redis = online.NewRedis(online.RedisOptions{Addr: cfg.RedisAddr, TracerProvider: cfg.TracerProvider})
		rt.store = rt.redis
		// Replicas share Redis, so they share one consumer group: each event is applied once.
		rt.group = "recserve-server"
		rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
		rt.catalog, rt.closers = catalog.NewRedis(rdb, "rs:"), append(rt.closers, rdb.Close)
	} else {
		rt.store = online.NewMemory()
		// In-process state: this process must see every event, in a group of its own.
		rt.group = "recserve-server-" + instanceID()
		if cfg.CatalogDir != "" {
			f, err := catalog.OpenFile(cfg.CatalogDir)
			if err != nil {
				return nil, err
			}
			rt.catalog, rt.closers = f, append(rt.closers, f.Close)
		}
	}
	if len(rt.brokers) == 0 && cfg.EmbeddedKafka {
		emb, err := events.StartEmbeddedOn(cfg.EmbeddedKafkaAddr, 4, cfg.Topic, cfg.CatalogTopic)
		if err != nil {
			rt.close()
			return nil, err
		}
		rt.embedded, rt.brokers = emb, emb.Addrs()
	}
	if len(rt.brokers) > 0 {
		p, err := events.NewProducer(events.ProducerConfig{Brokers: rt.brokers, Topic: cfg.Topic, CatalogTopic: cfg.CatalogTopic,
			Logger: cfg.Logger, TracerProvider: cfg.TracerProvider})
		if err != nil {
			rt.close()
			return nil, err
		}
		rt.producer = p
		if rt.lag, err = events.NewLagReader(rt.brokers); err != nil {
			rt.close()
			return nil, err
		}
	}
	return rt, nil
}

// observeLag exports the consumer group's lag as recserve_consumer_lag.
func (rt *realtime) observeLag(m metric.Meter) error {
	if rt.lag == nil {
		return nil
	}
	return telemetry.ObserveConsumerLag(m, rt.lag, rt.group)
}

// sink returns the producer as the server's EventSink, or nil when there is none.
func (rt *realtime) sink() server.EventSink {
	if rt.producer == nil {
		return nil
	}
	return rt.producer
}

// catalogSink returns the producer as the server's CatalogSink, or nil when there is none.
func (rt *realtime) catalogSink() server.CatalogSink {
	if rt.producer == nil {
		return nil
	}
	return rt.producer
}

// consumeCatalog applies the catalog topic until ctx is done. Every server
// reads all of it, in no group: each keeps the catalog in its memory.
func (rt *realtime) consumeCatalog(ctx context.Context, log *slog.Logger, srv *server.Server) error {
	cfg := events.ConsumerConfig{Brokers: rt.brokers, Topic: rt.catTopic, TracerProvider: rt.tracing}
	return events.ConsumeCatalog(ctx, cfg, log, srv.ApplyCatalog)
}

// consume applies the event stream to the online store until ctx is done. A store
// outage holds the batch (and its offsets) and retries, so nothing is lost.
func (rt *realtime) consume(ctx context.Context, log *slog.Logger, srv *server.Server) error {
	cfg := events.ConsumerConfig{Brokers: rt.brokers, Topic: rt.topic, Group: rt.group, TracerProvider: rt.tracing}
	return events.Consume(ctx, cfg, log, func(ctx context.Context, evs []*recservev1.Event) error {
		err := events.Retry(ctx, log, "online store: applying events failed; retrying", func() error {
			_, err := rt.store.Record(ctx, evs)
			return err
		}, "events", len(evs))
		if err == nil {
			srv.ObserveEvents(evs)
		}
		return err
	})
}

func (rt *realtime) close() {
	if rt.lag != nil {
		rt.lag.Close()
	}
	if rt.producer != nil {
		rt.producer.Close()
	}
	if rt.embedded != nil {
		rt.embedded.Close()
	}
	if rt.redis != nil {
		rt.redis.Close()
	}
	for _, c := range rt.closers {
		_ = c()
	}
}

func instanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
