package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const testTopic = "interactions"

func startBroker(t testing.TB, partitions int) *Embedded {
	t.Helper()
	e, err := StartEmbedded(testTopic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newProducer(t testing.TB, e *Embedded) *Producer {
	t.Helper()
	p, err := NewProducer(ProducerConfig{Brokers: e.Addrs(), Topic: testTopic, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// makeEvents returns n valid, normalized events spread over users; event i of
// a user has a larger timestamp than its earlier events.
func makeEvents(prefix string, n, users int) []*recservev1.Event {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	evs := make([]*recservev1.Event, n)
	for i := range evs {
		evs[i] = &recservev1.Event{
			EventId:   fmt.Sprintf("%s-%05d", prefix, i),
			UserId:    fmt.Sprintf("user-%03d", i%users),
			ItemId:    fmt.Sprintf("item-%03d", (i*7)%101),
			Type:      recservev1.EventType(1 + i%6),
			Weight:    float64(1 + i%5),
			Timestamp: timestamppb.New(base.Add(time.Duration(i) * time.Second)),
			RequestId: "req-" + prefix,
		}
	}
	return evs
}

func consumerConfig(e *Embedded, group string) ConsumerConfig {
	return ConsumerConfig{Brokers: e.Addrs(), Topic: testTopic, Group: group, SessionTimeout: time.Second}
}

// collect consumes until it has n events, then stops Consume and returns them.
func collect(t *testing.T, cfg ConsumerConfig, n int) []*recservev1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got []*recservev1.Event
	err := Consume(ctx, cfg, testLogger(t), func(ctx context.Context, evs []*recservev1.Event) error {
		got = append(got, evs...)
		if len(got) >= n {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if len(got) < n {
		t.Fatalf("consumed %d events before the deadline, want %d", len(got), n)
	}
	return got
}

// checkExactly checks that got holds each of want exactly once, unchanged, and
// each user's events of one batch (event id prefix) in the order of want.
func checkExactly(t *testing.T, got, want []*recservev1.Event) {
	t.Helper()
	byID := make(map[string]*recservev1.Event, len(want))
	for _, e := range want {
		byID[e.EventId] = e
	}
	seen := map[string]bool{}
	last := map[string]string{} // user and id prefix -> last event id
	for _, e := range got {
		w, ok := byID[e.EventId]
		switch {
		case !ok:
			t.Fatalf("unexpected event %v", e)
		case seen[e.EventId]:
			t.Fatalf("event %s delivered twice", e.EventId)
		case !proto.Equal(e, w):
			t.Fatalf("event %s changed: got %v, want %v", e.EventId, e, w)
		}
		prefix, _, _ := strings.Cut(e.EventId, "-")
		key := e.UserId + "|" + prefix
		if last[key] > e.EventId {
			t.Fatalf("user %s: event %s after %s", e.UserId, e.EventId, last[key])
		}
		seen[e.EventId] = true
		last[key] = e.EventId
	}
	if len(seen) != len(want) {
		t.Fatalf("got %d distinct events, want %d", len(seen), len(want))
	}
}

// readRaw reads n records of the topic from the start, without a group.
func readRaw(t *testing.T, e *Embedded, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d raw records, want %d", len(recs), n)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// offsets returns the group's committed offsets and the topic's end
// offsets, each summed over partitions (see LagReader.Offsets).
func offsets(t *testing.T, e *Embedded, group string) (committed, end int64) {
	t.Helper()
	r, err := NewLagReader(e.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	committed, end, err = r.Offsets(ctx, group, testTopic)
	if err != nil {
		t.Fatal(err)
	}
	return committed, end
}

func TestProduceConsume(t *testing.T) {
	e := startBroker(t, 4)
	p := newProducer(t, e)
	batches := [][]*recservev1.Event{makeEvents("rtA", MaxBatch, 37), makeEvents("rtB", MaxBatch, 37)}
	// Two concurrent batches, then one more event after them.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for b := range batches {
		wg.Go(func() { errs[b] = p.Produce(t.Context(), batches[b]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Produce: %v", err)
		}
	}
	extra := makeEvents("rt2", 1, 1)
	if err := p.Produce(t.Context(), extra); err != nil {
		t.Fatal(err)
	}
	all := append(append(batches[0], batches[1]...), extra...)

	got := collect(t, consumerConfig(e, "g1"), len(all))
	// Batches were produced concurrently, so only order within each batch holds.
	checkExactly(t, got, all)

	recs := readRaw(t, e, len(all))
	partitionOf := map[string]int32{}
	for _, r := range recs {
		var ev recservev1.Event
		if err := proto.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != ev.UserId {
			t.Fatalf("record key %q, want the user id %q", r.Key, ev.UserId)
		}
		if p, ok := partitionOf[ev.UserId]; ok && p != r.Partition {
			t.Fatalf("user %s on partitions %d and %d", ev.UserId, p, r.Partition)
		}
		partitionOf[ev.UserId] = r.Partition
	}
	if c, end := offsets(t, e, "g1"); c != end || end != int64(len(all)) {
		t.Fatalf("committed %d of %d records, want all %d", c, end, len(all))
	}
}

func TestProduceBrokerDown(t *testing.T) {
	e := startBroker(t, 2)
	p, err := NewProducer(ProducerConfig{Brokers: e.Addrs(), Topic: testTopic, Logger: testLogger(t), CloseTimeout: time.Second, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(t.Context(), makeEvents("up", 10, 3)); err != nil {
		t.Fatalf("Produce while up: %v", err)
	}
	e.Close()

	for i, timeout := range []time.Duration{time.Second, 2 * time.Second} {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		start := time.Now()
		err := p.Produce(ctx, makeEvents(fmt.Sprint("down", i), 10, 3))
		took := time.Since(start)
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Produce with the broker down = %v, want ErrUnavailable", err)
		}
		if took > timeout+time.Second {
			t.Fatalf("Produce took %v with a %v deadline", took, timeout)
		}
	}

	start := time.Now()
	p.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
	if err := p.Produce(t.Context(), makeEvents("closed", 1, 1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Produce after Close = %v, want ErrUnavailable", err)
	}
}

func TestProduceNoBroker(t *testing.T) {
	e := startBroker(t, 1)
	addrs := e.Addrs()
	e.Close()
	p, err := NewProducer(ProducerConfig{Brokers: addrs, Topic: testTopic, CloseTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := p.Produce(ctx, makeEvents("x", 3, 1)); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Produce to a closed broker = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestProduceCanceled(t *testing.T) {
	e := startBroker(t, 1)
	p := newProducer(t, e)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := p.Produce(ctx, makeEvents("c", 3, 1))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Produce with a canceled context = %v, want context.Canceled only", err)
	}
}

func TestConsumeHandleErrorDoesNotCommit(t *testing.T) {
	e := startBroker(t, 3)
	p := newProducer(t, e)
	evs := makeEvents("nc", 50, 7)
	if err := p.Produce(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	calls := 0
	err := Consume(ctx, consumerConfig(e, "g"), testLogger(t), func(ctx context.Context, evs []*recservev1.Event) error {
		calls++
		return boom
	})
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Consume = %v after %d handle calls, want boom after 1", err, calls)
	}
	if c, _ := offsets(t, e, "g"); c != 0 {
		t.Fatalf("committed %d records after a failed handle", c)
	}
	// Another member of the group gets everything again, and commits it.
	got := collect(t, consumerConfig(e, "g"), len(evs))
	checkExactly(t, got, evs)
	if c, end := offsets(t, e, "g"); c != end {
		t.Fatalf("committed %d of %d", c, end)
	}
	// A handle that fails because ctx is done is not an error, and commits nothing.
	more := makeEvents("nc2", 5, 2)
	if err := p.Produce(t.Context(), more); err != nil {
		t.Fatal(err)
	}
	before, _ := offsets(t, e, "g")
	ctx2, cancel2 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel2()
	err = Consume(ctx2, consumerConfig(e, "g"), testLogger(t), func(ctx context.Context, evs []*recservev1.Event) error {
		cancel2()
		return ctx.Err()
	})
	if err != nil {
		t.Fatalf("Consume after its handle saw ctx done = %v, want nil", err)
	}
	if after, _ := offsets(t, e, "g"); after != before {
		t.Fatalf("committed offsets moved from %d to %d", before, after)
	}
	checkExactly(t, collect(t, consumerConfig(e, "g"), len(more)), more)
}

// TestConsumeExternalProducer feeds the consumer from a plain Kafka client, as
// another service would: keys of its choosing, and records that are not events.
func TestConsumeExternalProducer(t *testing.T) {
	e := startBroker(t, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.DefaultProduceTopic(testTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	evs := makeEvents("ext", 40, 5)
	var recs []*kgo.Record
	for i, ev := range evs {
		v, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Key: []byte(ev.UserId), Value: v})
		if i%10 == 0 { // garbage between events, on the same partition
			recs = append(recs,
				&kgo.Record{Key: []byte(ev.UserId), Value: []byte{0xff, 0xff, 0xff}},
				&kgo.Record{Key: []byte(ev.UserId)},
				&kgo.Record{Key: []byte(ev.UserId), Value: v[:len(v)/2]})
		}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Half an event can decode (it is a prefix at a field boundary); count only
	// whole ones by id.
	got := collect(t, consumerConfig(e, "ext"), len(evs))
	var whole []*recservev1.Event
	for _, g := range got {
		if g.RequestId != "" {
			whole = append(whole, g)
		}
	}
	checkExactly(t, whole, evs)
}

func TestEnsureTopic(t *testing.T) {
	e := startBroker(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := EnsureTopic(ctx, e.Addrs(), "other", 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := EnsureTopic(ctx, e.Addrs(), testTopic, 5); err != nil {
		t.Fatalf("EnsureTopic of an existing topic: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, "other", testTopic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td["other"].Partitions); n != 3 {
		t.Errorf("other has %d partitions, want 3", n)
	}
	if n := len(td[testTopic].Partitions); n != 1 {
		t.Errorf("%s has %d partitions, want 1 (left as it was)", testTopic, n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []ProducerConfig{{Topic: "t"}, {Brokers: []string{"x:1"}}} {
		if _, err := NewProducer(cfg); err == nil {
			t.Errorf("NewProducer(%+v) succeeded", cfg)
		}
	}
	handle := func(context.Context, []*recservev1.Event) error { return nil }
	for _, cfg := range []ConsumerConfig{{Topic: "t", Group: "g"}, {Brokers: []string{"x:1"}, Group: "g"}, {Brokers: []string{"x:1"}, Topic: "t"}} {
		if err := Consume(t.Context(), cfg, nil, handle); err == nil || !strings.HasPrefix(err.Error(), "events: consumer:") {
			t.Errorf("Consume(%+v) = %v", cfg, err)
		}
	}
}

// BenchmarkProduce measures acknowledged events per second in batches of
// MaxBatch to the embedded broker.
func BenchmarkProduce(b *testing.B) {
	e := startBroker(b, 4)
	p := newProducer(b, e)
	batches := make([][]*recservev1.Event, 8)
	for i := range batches {
		batches[i] = makeEvents(fmt.Sprint("b", i), MaxBatch, 997)
	}
	for i := 0; b.Loop(); i++ {
		if err := p.Produce(b.Context(), batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*MaxBatch)/b.Elapsed().Seconds(), "events/s")
}

// TestConsumeJSONRecords: events in JSON (protojson of recserve.v1.Event, as
// a non-Go producer writes them) are consumed beside protobuf ones, detected
// by their first byte or named by the content-type header; JSON that is not
// an Event (an unknown field) is skipped.
func TestConsumeJSONRecords(t *testing.T) {
	e := startBroker(t, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.DefaultProduceTopic(testTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	evs := makeEvents("json", 30, 3)
	var recs []*kgo.Record
	for i, ev := range evs {
		var rec *kgo.Record
		switch i % 3 {
		case 0: // detected
			v, err := protojson.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			rec = &kgo.Record{Key: []byte(ev.UserId), Value: v}
		case 1: // named, with snake_case names and leading space
			v, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			rec = &kgo.Record{Key: []byte(ev.UserId), Value: append([]byte("  "), v...),
				Headers: []kgo.RecordHeader{{Key: "Content-Type", Value: []byte("application/json; charset=utf-8")}}}
		default: // protobuf
			v, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			rec = &kgo.Record{Key: []byte(ev.UserId), Value: v}
		}
		recs = append(recs, rec, &kgo.Record{Key: []byte(ev.UserId), Value: []byte(`{"eventId":"x","colour":"red"}`)})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	checkExactly(t, collect(t, consumerConfig(e, "json"), len(evs)), evs)
}
