package events

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagReader reports how far consumer groups are behind the topics they read.
type LagReader struct {
	cl  *kgo.Client
	adm *kadm.Client
}

// NewLagReader connects (lazily) to the brokers.
func NewLagReader(brokers []string) (*LagReader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("events: lag reader: %w", err)
	}
	return &LagReader{cl: cl, adm: kadm.NewClient(cl)}, nil
}

// PartitionLag is one partition's lag: records between the group's committed
// offset and the partition's end.
type PartitionLag struct {
	Topic     string
	Partition int32
	Lag       int64
}

// Lag returns the group's lag per partition; partitions whose lag cannot be
// computed are left out.
func (r *LagReader) Lag(ctx context.Context, group string) ([]PartitionLag, error) {
	lags, err := r.adm.Lag(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("%w: lag of group %s: %v", ErrUnavailable, group, err)
	}
	var out []PartitionLag
	for _, l := range lags[group].Lag.Sorted() {
		if l.Err == nil && l.Lag >= 0 {
			out = append(out, PartitionLag{Topic: l.Topic, Partition: l.Partition, Lag: l.Lag})
		}
	}
	return out, nil
}

// Offsets returns the sum over topic's partitions of the group's committed
// offsets (partitions it has not committed count 0) and of their end
// offsets: equal once the group has consumed and committed everything.
func (r *LagReader) Offsets(ctx context.Context, group, topic string) (committed, end int64, err error) {
	got, err := r.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = got.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: offsets of group %s: %v", ErrUnavailable, group, err)
	}
	got.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			committed += o.At
		}
	})
	ends, err := r.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: end offsets of %s: %v", ErrUnavailable, topic, err)
	}
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	return committed, end, nil
}

// Close closes the connections.
func (r *LagReader) Close() { r.cl.Close() }
