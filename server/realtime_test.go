package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// applySink is an EventSink that applies events straight to an online store, as
// the Kafka consumer does, or fails with err.
type applySink struct {
	store *online.Memory
	mu    sync.Mutex
	got   []*recservev1.Event
	err   error
}

func (a *applySink) Produce(ctx context.Context, evs []*recservev1.Event) error {
	if a.err != nil {
		return a.err
	}
	a.mu.Lock()
	a.got = append(a.got, evs...)
	a.mu.Unlock()
	_, err := a.store.Record(ctx, evs)
	return err
}

func newRealtimeFixture(t *testing.T) (*fixture, *applySink, recservev1.EventServiceClient) {
	t.Helper()
	store := online.NewMemory()
	sink := &applySink{store: store}
	f := newFixture(t, Options{Online: store, Events: sink})
	return f, sink, recservev1.NewEventServiceClient(f.conn)
}

func purchase(id, user, item string) *recservev1.Event {
	return &recservev1.Event{EventId: id, UserId: user, ItemId: item, Type: recservev1.EventType_EVENT_TYPE_PURCHASE}
}

func TestEventExcludesPurchasedItem(t *testing.T) {
	f, _, ev := newRealtimeFixture(t)
	f.publish(t, testBundle("m", 20, 300, 8, 30))
	ctx := context.Background()
	req := &recservev1.RecommendRequest{UserId: "u3", N: proto.Int32(5)}
	before, err := f.client.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The same request again is served from the cache: same items.
	again, _ := f.client.Recommend(ctx, req)
	if !slices.Equal(ids(before.GetItems()), ids(again.GetItems())) || again.GetRequestId() == before.GetRequestId() {
		t.Fatalf("cached answer differs or reuses the request id: %v vs %v", again, before)
	}
	top := before.GetItems()[0].GetItemId()
	if _, err := ev.RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: []*recservev1.Event{purchase("p1", "u3", top)}}); err != nil {
		t.Fatal(err)
	}
	after, err := f.client.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(after.GetItems()), top) {
		t.Fatalf("purchased item %s still recommended (cache not invalidated?): %v", top, ids(after.GetItems()))
	}
	if !slices.Equal(ids(after.GetItems())[:4], ids(before.GetItems())[1:]) {
		t.Fatalf("after purchase %v, want the old list shifted %v", ids(after.GetItems()), ids(before.GetItems())[1:])
	}
	withSeen, _ := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u3", N: proto.Int32(5), IncludeSeen: true})
	if !slices.Contains(ids(withSeen.GetItems()), top) {
		t.Fatalf("include_seen should bring %s back: %v", top, ids(withSeen.GetItems()))
	}
}

func TestNewUserFoldedIn(t *testing.T) {
	f, _, ev := newRealtimeFixture(t)
	b := testBundle("m", 20, 300, 8, 31)
	f.publish(t, b)
	ctx := context.Background()
	req := &recservev1.RecommendRequest{UserId: "newbie", N: proto.Int32(10)}
	resp, err := f.client.Recommend(ctx, req)
	if err != nil || resp.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY {
		t.Fatalf("before events: %v %v", resp, err)
	}
	evs := []*recservev1.Event{purchase("n1", "newbie", "i5"), purchase("n2", "newbie", "i6"), {EventId: "n3", UserId: "newbie", ItemId: "not-in-model", Type: recservev1.EventType_EVENT_TYPE_VIEW}}
	if _, err := ev.RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: evs}); err != nil {
		t.Fatal(err)
	}
	resp, err = f.client.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_FOLD_IN || len(resp.GetItems()) != 10 {
		t.Fatalf("after events: source %v, %d items", resp.GetSource(), len(resp.GetItems()))
	}
	got := ids(resp.GetItems())
	if slices.Contains(got, "i5") || slices.Contains(got, "i6") {
		t.Fatalf("interacted items recommended: %v", got)
	}
	// The answer is retrieval with the folded-in vector.
	mv, _ := f.srv.models.get("m")
	v := mv.stable.folder.FoldIn([]int32{5, 6}, []float32{float32(events.Weight(recservev1.EventType_EVENT_TYPE_PURCHASE)), float32(events.Weight(recservev1.EventType_EVENT_TYPE_PURCHASE))})
	want := exactTop(b, v, 10, func(i int) bool { return b.Items[i].Available && i != 5 && i != 6 })
	hits := 0
	for _, id := range got {
		if slices.Contains(want, id) {
			hits++
		}
	}
	if hits < 9 {
		t.Fatalf("fold-in results %v, exact %v", got, want)
	}
}

func TestRecordEventsErrors(t *testing.T) {
	f, sink, ev := newRealtimeFixture(t)
	f.publish(t, testBundle("m", 5, 50, 8, 32))
	ctx := context.Background()
	good := purchase("g1", "u1", "i1")
	cases := []struct {
		name  string
		evs   []*recservev1.Event
		field string
	}{
		{"empty batch", nil, "events"},
		{"empty user", []*recservev1.Event{good, {EventId: "x", ItemId: "i1", Type: recservev1.EventType_EVENT_TYPE_VIEW}}, "events[1].user_id"},
		{"unknown type", []*recservev1.Event{{EventId: "x", UserId: "u", ItemId: "i1"}}, "events[0].type"},
	}
	for _, c := range cases {
		_, err := ev.RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: c.evs})
		st := status.Convert(err)
		var field string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				field = br.GetFieldViolations()[0].GetField()
			}
		}
		if st.Code() != codes.InvalidArgument || field != c.field {
			t.Errorf("%s: %v (field %q), want INVALID_ARGUMENT on %q", c.name, err, field, c.field)
		}
	}
	if len(sink.got) != 0 {
		t.Fatalf("an invalid batch reached the broker: %v", sink.got)
	}
	sink.err = fmt.Errorf("produce: %w", events.ErrUnavailable)
	if _, err := ev.RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: []*recservev1.Event{good}}); status.Code(err) != codes.Unavailable {
		t.Fatalf("broker down: %v, want UNAVAILABLE", err)
	}

	noSink := newFixture(t, Options{})
	_, err := recservev1.NewEventServiceClient(noSink.conn).RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: []*recservev1.Event{good}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("no broker configured: %v, want FAILED_PRECONDITION", err)
	}
}

func TestOnlineStoreDownDegrades(t *testing.T) {
	store := online.NewRedis(online.RedisOptions{Addr: "127.0.0.1:1"})
	defer store.Close()
	f := newFixture(t, Options{Online: store})
	f.publish(t, testBundle("m", 10, 100, 8, 33))
	for i := 0; i < 3; i++ {
		resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1"})
		if err != nil || len(resp.GetItems()) != DefaultN {
			t.Fatalf("Recommend with Redis down: %v %v", resp, err)
		}
	}
	if f.srv.Degraded() == 0 {
		t.Fatal("degraded answers not counted")
	}
}

// countingStore is an in-memory online store that counts response-cache calls
// and reads of users' state.
type countingStore struct {
	*online.Memory
	gets, sets, reads atomic.Int64
}

func (c *countingStore) Users(ctx context.Context, users []string) ([]online.User, error) {
	c.reads.Add(1)
	return c.Memory.Users(ctx, users)
}

func (c *countingStore) CacheGet(ctx context.Context, key string) ([]byte, bool, error) {
	c.gets.Add(1)
	return c.Memory.CacheGet(ctx, key)
}

func (c *countingStore) CacheSet(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	c.sets.Add(1)
	return c.Memory.CacheSet(ctx, key, val, ttl)
}

func TestResponseCacheOnAndOff(t *testing.T) {
	for _, tc := range []struct {
		ttl        time.Duration
		gets, sets int64
	}{{-1, 0, 0}, {time.Minute, 2, 1}} {
		store := &countingStore{Memory: online.NewMemory()}
		f := newFixture(t, Options{Online: store, CacheTTL: tc.ttl})
		f.publish(t, testBundle("m", 10, 100, 8, 33))
		var first *recservev1.RecommendResponse
		for i := range 2 {
			resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1"})
			if err != nil || len(resp.GetItems()) != DefaultN {
				t.Fatalf("ttl %v: Recommend: %v %v", tc.ttl, resp, err)
			}
			if i == 0 {
				first = resp
			} else if !slices.Equal(ids(resp.GetItems()), ids(first.GetItems())) || resp.GetRequestId() == first.GetRequestId() {
				t.Fatalf("ttl %v: second answer %v (request %s), first %v (request %s)", tc.ttl,
					ids(resp.GetItems()), resp.GetRequestId(), ids(first.GetItems()), first.GetRequestId())
			}
		}
		if store.gets.Load() != tc.gets || store.sets.Load() != tc.sets {
			t.Errorf("ttl %v: %d cache gets, %d sets; want %d, %d", tc.ttl, store.gets.Load(), store.sets.Load(), tc.gets, tc.sets)
		}
	}
}

// TestBatchRecommendMatchesRecommend checks that BatchRecommend answers every
// user as Recommend does, real-time state included, reading the online store
// once for the whole batch.
func TestBatchRecommendMatchesRecommend(t *testing.T) {
	store := &countingStore{Memory: online.NewMemory()}
	f := newFixture(t, Options{Online: store, CacheTTL: -1})
	f.publish(t, testBundle("m", 50, 300, 8, 34))
	ctx := context.Background()
	users := []string{"stranger"}
	for u := range 40 {
		users = append(users, fmt.Sprintf("u%d", u))
	}
	var evs []*recservev1.Event
	for u := 0; u < 40; u += 3 { // every third user bought what the model ranks first for them
		resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: fmt.Sprintf("u%d", u)})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, &recservev1.Event{EventId: fmt.Sprintf("b%d", u), UserId: fmt.Sprintf("u%d", u), ItemId: resp.GetItems()[0].GetItemId(), Type: recservev1.EventType_EVENT_TYPE_PURCHASE, Weight: 1})
	}
	if _, err := store.Record(ctx, evs); err != nil {
		t.Fatal(err)
	}
	store.reads.Store(0)
	batch, err := f.client.BatchRecommend(ctx, &recservev1.BatchRecommendRequest{UserIds: users})
	if err != nil {
		t.Fatal(err)
	}
	if got := store.reads.Load(); got != 1 {
		t.Fatalf("%d reads of the online store for one batch, want 1", got)
	}
	for i, r := range batch.GetResults() {
		one, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: users[i]})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetUserId() != users[i] || r.GetSource() != one.GetSource() || !slices.Equal(ids(r.GetItems()), ids(one.GetItems())) {
			t.Fatalf("batch result %d (%s): %v %v, Recommend: %v %v", i, users[i], r.GetSource(), ids(r.GetItems()), one.GetSource(), ids(one.GetItems()))
		}
	}
	if len(batch.GetResults()) != len(users) {
		t.Fatalf("%d results for %d users", len(batch.GetResults()), len(users))
	}
}
