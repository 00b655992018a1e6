package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Consumer defaults.
const (
	DefaultFetchMaxWait   = 10 * time.Millisecond
	DefaultMaxPollRecords = 10000
	DefaultCommitTimeout  = 10 * time.Second
	DefaultSessionTimeout = 45 * time.Second
)

// ConsumerConfig configures Consume. Zero values take the defaults. A group
// new to the topic starts at the earliest offset.
type ConsumerConfig struct {
	Brokers []string
	Topic   string
	Group   string
	// FetchMaxWait is how long the broker holds a fetch that has no new records
	// (DefaultFetchMaxWait): the delay between a produce and its consumption.
	FetchMaxWait time.Duration
	// MaxPollRecords bounds the events passed to one handle call (DefaultMaxPollRecords).
	MaxPollRecords int
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to others (DefaultSessionTimeout); the broker's
	// group.min.session.timeout.ms bounds it from below.
	SessionTimeout time.Duration
	// CommitTimeout bounds the commit of a handled batch (DefaultCommitTimeout).
	CommitTimeout time.Duration
	// TracerProvider receives a span per handled batch, linked to the spans
	// that produced its records (nil: none); handle gets it in its context.
	TracerProvider trace.TracerProvider
}

func (c *ConsumerConfig) setDefaults() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("events: consumer: no brokers")
	case c.Topic == "":
		return errors.New("events: consumer: no topic")
	case c.Group == "":
		return errors.New("events: consumer: no group")
	}
	if c.FetchMaxWait <= 0 {
		c.FetchMaxWait = DefaultFetchMaxWait
	}
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	return nil
}

// errorBackoff is the pause after a poll that returned only errors, so that a
// persistent error (a missing topic) does not spin.
const errorBackoff = 250 * time.Millisecond

// Consume reads the topic as a member of the group and calls handle with each
// polled batch: the decoded events, in offset order within each partition.
// Records that do not decode are logged and skipped.
//
// The batch's offsets are committed only after handle returned nil, and the
// group does not rebalance between the poll and the commit, so a batch whose
// handle did not finish (an error, a crash) is delivered again, to this or
// another member: delivery is at least once, and handle deduplicates by event
// id. A failed commit is logged; the next commit covers it.
//
// A handle error stops Consume, which returns it without committing the batch.
// When ctx is done Consume returns nil; a batch handled by then is committed
// (under CommitTimeout), and a handle error that is ctx's error counts as ctx
// being done, so that batch is not committed.
func Consume(ctx context.Context, cfg ConsumerConfig, log *slog.Logger, handle func(ctx context.Context, evs []*recservev1.Event) error) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log = orDiscard(log).With("topic", cfg.Topic, "group", cfg.Group)
	tr := tracer(cfg.TracerProvider)
	heartbeat := min(3*time.Second, cfg.SessionTimeout/3)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(heartbeat),
		kgo.WithLogger(kgoLogger{log}),
	)
	if err != nil {
		return fmt.Errorf("events: consumer: %w", err)
	}
	// Leaving the group revokes our partitions; with autocommit disabled that
	// commits nothing, so an unhandled batch stays uncommitted.
	defer cl.CloseAllowingRebalance()

	for {
		fetches := cl.PollRecords(ctx, cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return nil // anything polled now is delivered again
		}
		var fetchErrs int
		fetches.EachError(func(topic string, partition int32, err error) {
			fetchErrs++
			log.Warn("fetch error", "partition", partition, "err", err)
		})
		evs, recs := decode(fetches, log)
		if len(evs) > 0 {
			sctx, span := tr.Start(ctx, "process "+cfg.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
				spanAttrs(cfg.Topic, len(evs)), trace.WithLinks(links(recs)...))
			err := handle(sctx, evs)
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
			if err != nil {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					return nil
				}
				return err
			}
		}
		if fetches.NumRecords() > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.CommitTimeout)
			if err := cl.CommitUncommittedOffsets(cctx); err != nil {
				log.Warn("commit failed; the batch will be delivered again", "events", len(evs), "err", err)
			}
			cancel()
		} else if fetchErrs > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(errorBackoff):
			}
		}
		cl.AllowRebalance()
	}
}

// decode returns the events of the polled records and their records,
// skipping (and logging) the ones that are not an Event in protobuf or JSON
// (see unmarshal).
func decode(fetches kgo.Fetches, log *slog.Logger) ([]*recservev1.Event, []*kgo.Record) {
	evs := make([]*recservev1.Event, 0, fetches.NumRecords())
	recs := make([]*kgo.Record, 0, fetches.NumRecords())
	fetches.EachRecord(func(r *kgo.Record) {
		e := new(recservev1.Event)
		if err := unmarshal(r, e); err != nil {
			log.Warn("skipping a record that is not an event", "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		evs = append(evs, e)
		recs = append(recs, r)
	})
	return evs, recs
}

// Retry calls fn until it succeeds or ctx is done (then it returns ctx's
// error), pausing 10 ms after the first failure and twice as long after each
// next one, up to 2 s; every failure is logged as msg with the error and attrs.
func Retry(ctx context.Context, log *slog.Logger, msg string, fn func() error, attrs ...any) error {
	backoff := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		log.Warn(msg, append([]any{"err", err}, attrs...)...)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
