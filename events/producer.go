package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// ErrUnavailable is wrapped by every error about the broker not acknowledging a
// batch in time: it is down, unreachable or too slow, or the producer is closed.
var ErrUnavailable = errors.New("event broker unavailable")

// Producer defaults.
const (
	DefaultLinger          = 5 * time.Millisecond
	DefaultDeliveryTimeout = 30 * time.Second
	DefaultDialTimeout     = 5 * time.Second
	DefaultCloseTimeout    = 10 * time.Second
)

// ProducerConfig configures a Producer. Zero durations take the defaults.
type ProducerConfig struct {
	Brokers []string
	Topic   string
	// CatalogTopic receives ProduceCatalog's records (default "catalog").
	CatalogTopic string
	// Linger is how long a partition waits for more records before it sends a
	// batch, so that concurrent Produce calls share requests (DefaultLinger).
	// Produce itself does not wait for it: it sends its own records at once.
	Linger time.Duration
	// DeliveryTimeout bounds how long a record waits for the broker when the
	// caller's context allows longer (DefaultDeliveryTimeout).
	DeliveryTimeout time.Duration
	// DialTimeout bounds connecting to a broker (DefaultDialTimeout).
	DialTimeout time.Duration
	// CloseTimeout bounds how long Close waits for buffered records (DefaultCloseTimeout).
	CloseTimeout time.Duration
	// Logger receives the Kafka client's warnings and errors (nil: discarded).
	Logger *slog.Logger
	// TracerProvider receives a span per Produce call (nil: none). Records
	// carry the caller's trace context in their headers either way.
	TracerProvider trace.TracerProvider
}

func (c *ProducerConfig) setDefaults() error {
	if len(c.Brokers) == 0 {
		return errors.New("events: producer: no brokers")
	}
	if c.Topic == "" {
		return errors.New("events: producer: no topic")
	}
	if c.CatalogTopic == "" {
		c.CatalogTopic = DefaultCatalogTopic
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Linger, DefaultLinger)
	def(&c.DeliveryTimeout, DefaultDeliveryTimeout)
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.CloseTimeout, DefaultCloseTimeout)
	return nil
}

// Producer writes events to the topic with an idempotent producer and acks from
// all in-sync replicas. It is safe for concurrent use.
type Producer struct {
	cfg    ProducerConfig
	cl     *kgo.Client
	tracer trace.Tracer

	mu     sync.RWMutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup // in-flight ProduceSync calls
}

// NewProducer returns a Producer. It does not connect: a broker that is down
// makes Produce fail with ErrUnavailable, not NewProducer.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence (the default) requires it
		kgo.ProducerLinger(cfg.Linger),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.DialTimeout(cfg.DialTimeout),
		kgo.WithLogger(kgoLogger{orDiscard(cfg.Logger)}),
	)
	if err != nil {
		return nil, fmt.Errorf("events: producer: %w", err)
	}
	return &Producer{cfg: cfg, cl: cl, tracer: tracer(cfg.TracerProvider)}, nil
}

// Produce writes evs, one record each keyed by user id, and returns once the
// broker has acknowledged every one of them. It does not validate them (see
// Validate and Normalize). When the broker does not acknowledge all of them
// before ctx is done or the delivery timeout passes, or the producer is closed,
// the error wraps ErrUnavailable; some of the events may have been written, so
// the caller retries the whole batch and consumers deduplicate by event id.
// When ctx is canceled (not timed out) the error is ctx's, without ErrUnavailable.
func (p *Producer) Produce(ctx context.Context, evs []*recservev1.Event) error {
	msgs := make([]proto.Message, len(evs))
	keys := make([]string, len(evs))
	for i, e := range evs {
		msgs[i], keys[i] = e, e.GetUserId()
	}
	return p.send(ctx, p.cfg.Topic, "events", keys, msgs)
}

// ProduceCatalog writes catalog records to the catalog topic, keyed by item id
// (or, for an erasure, user id), as Produce writes events.
func (p *Producer) ProduceCatalog(ctx context.Context, recs []*recservev1.CatalogRecord) error {
	msgs := make([]proto.Message, len(recs))
	keys := make([]string, len(recs))
	for i, r := range recs {
		msgs[i], keys[i] = r, catalogKey(r)
	}
	return p.send(ctx, p.cfg.CatalogTopic, "records", keys, msgs)
}

// send writes msgs to topic, msgs[i] keyed by keys[i]; what names them in errors.
func (p *Producer) send(ctx context.Context, topic, what string, keys []string, msgs []proto.Message) (err error) {
	if len(msgs) == 0 {
		return nil
	}
	ctx, span := p.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer), spanAttrs(topic, len(msgs)))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		v, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("events: encode %s[%d]: %w", what, i, err)
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(keys[i]), Value: v}
		propagator.Inject(ctx, headers{recs[i]})
	}

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return fmt.Errorf("%w: %w", ErrUnavailable, kgo.ErrClientClosed)
	}
	p.wg.Add(1)
	p.mu.RUnlock()
	// ProduceSync sends at once instead of lingering, but it waits for every
	// record to be resolved, and an idempotent producer cannot give up on a
	// record it has sent until the broker answers or the connection dies. So it
	// runs on its own and we stop waiting when ctx is done; Close waits for it.
	done := make(chan error, 1)
	go func() {
		defer p.wg.Done()
		done <- p.cl.ProduceSync(ctx, recs...).FirstErr()
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled:
		return fmt.Errorf("events: produce: %w", err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Close waits up to the close timeout for buffered records to be acknowledged,
// then closes the client, failing what is left.
func (p *Producer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CloseTimeout)
	defer cancel()
	_ = p.cl.Flush(ctx) // whatever is not flushed fails with ErrClientClosed below
	p.cl.Close()
	p.wg.Wait()
}
