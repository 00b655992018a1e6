package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recserve/recserve/catalog"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// DefaultCatalogTopic carries catalog changes and user erasures.
const DefaultCatalogTopic = catalog.DefaultTopicName

// catalogKey is a catalog record's key: the item id, or the erased user's id.
func catalogKey(r *recservev1.CatalogRecord) string {
	if id := catalog.ItemID(r); id != "" {
		return id
	}
	return r.GetEraseUserId()
}

// ConsumeCatalog reads the catalog topic and calls handle with each polled
// batch of valid records, in offset order within each partition; records
// that do not decode or validate are logged and skipped, and a record without
// a time gets its Kafka timestamp. A handle error is retried with the same
// batch after a pause until handle succeeds or ctx is done, so nothing is
// skipped: handle must be idempotent (catalog.State is).
//
// With cfg.Group empty the client reads every partition from its start in no
// group, as every server must see every change (a server's state is in its
// memory); with a group, offsets are committed after handle succeeded.
func ConsumeCatalog(ctx context.Context, cfg ConsumerConfig, log *slog.Logger, handle func(ctx context.Context, recs []*recservev1.CatalogRecord) error) error {
	group := cfg.Group
	cfg.Group = "-" // setDefaults requires one
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log = orDiscard(log).With("topic", cfg.Topic)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		kgo.WithLogger(kgoLogger{log}),
	}
	if group != "" {
		opts = append(opts, kgo.ConsumerGroup(group), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
			kgo.SessionTimeout(cfg.SessionTimeout), kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/3)))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("events: catalog consumer: %w", err)
	}
	defer cl.CloseAllowingRebalance()
	for {
		fetches := cl.PollRecords(ctx, cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return nil
		}
		fetchErrs := 0
		fetches.EachError(func(_ string, partition int32, err error) {
			fetchErrs++
			log.Warn("fetch error", "partition", partition, "err", err)
		})
		recs := decodeCatalog(fetches, log)
		if len(recs) > 0 {
			if err := Retry(ctx, log, "applying catalog records failed; retrying", func() error { return handle(ctx, recs) }, "records", len(recs)); err != nil {
				return nil // ctx is done
			}
		}
		if group != "" && fetches.NumRecords() > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.CommitTimeout)
			if err := cl.CommitUncommittedOffsets(cctx); err != nil {
				log.Warn("commit failed; the batch will be delivered again", "records", len(recs), "err", err)
			}
			cancel()
		}
		if group != "" {
			cl.AllowRebalance()
		}
		if fetches.NumRecords() == 0 && fetchErrs > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(errorBackoff):
			}
		}
	}
}

func decodeCatalog(fetches kgo.Fetches, log *slog.Logger) []*recservev1.CatalogRecord {
	out := make([]*recservev1.CatalogRecord, 0, fetches.NumRecords())
	fetches.EachRecord(func(r *kgo.Record) {
		rec := new(recservev1.CatalogRecord)
		err := unmarshal(r, rec)
		if err == nil {
			err = catalog.Validate(rec)
		}
		if err == nil && rec.Time != nil {
			err = rec.Time.CheckValid()
		}
		if err != nil {
			log.Warn("skipping a record that is not a valid catalog change", "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		if rec.Time == nil {
			rec.Time = timestamppb.New(r.Timestamp)
		}
		out = append(out, rec)
	})
	return out
}
