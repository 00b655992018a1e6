package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Embedded is an in-process, in-memory Kafka-protocol broker (kfake) for the
// demo and tests. It keeps nothing when closed.
type Embedded struct {
	c *kfake.Cluster
}

// StartEmbedded starts a one-broker cluster on a free loopback port with topic,
// and any more topics, created with the given number of partitions. It accepts
// group session timeouts down to 100ms, so that tests can let a dead member go
// quickly.
func StartEmbedded(topic string, partitions int, more ...string) (*Embedded, error) {
	return StartEmbeddedOn("", partitions, append([]string{topic}, more...)...)
}

// StartEmbeddedOn is StartEmbedded listening on addr (host:port; empty: a
// free loopback port), which the broker also advertises to clients.
func StartEmbeddedOn(addr string, partitions int, topics ...string) (*Embedded, error) {
	if len(topics) == 0 || topics[0] == "" || partitions < 1 {
		return nil, fmt.Errorf("events: embedded broker: need a topic and at least one partition")
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(partitions), topics...),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
	if addr != "" {
		opts = append(opts, kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("events: embedded broker: %w", err)
	}
	return &Embedded{c: c}, nil
}

// Addrs returns the broker addresses ("127.0.0.1:port").
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Close stops the broker.
func (e *Embedded) Close() { e.c.Close() }

// EnsureTopic creates topic with the given number of partitions and the
// brokers' default replication, unless it exists (whatever its partitions).
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("events: ensure topic %s: %w", topic, err)
	}
	defer cl.Close()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("events: ensure topic %s: %w", topic, err)
	}
	return nil
}
