package recserveclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a recserve server double on a real loopback listener. Its first
// failFirst calls fail with failCode (UNAVAILABLE unless set); it records every
// call's deadline and request.
type backend struct {
	recservev1.UnimplementedRecommendServiceServer
	recservev1.UnimplementedEventServiceServer
	recservev1.UnimplementedCatalogServiceServer
	recservev1.UnimplementedUserServiceServer
	addr string

	failFirst int
	failCode  codes.Code
	// stall, if set, says how long call n (from 0) waits before answering; a call
	// stops waiting when its context ends.
	stall func(n int) time.Duration

	mu        sync.Mutex
	calls     int
	deadlines []time.Duration // time left at arrival; 0: no deadline
	requests  []proto.Message
	cancelled int // calls whose context ended while they stalled
	metadata  []metadata.MD
}

func startBackend(t *testing.T, b *backend, opts ...grpc.ServerOption) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	recservev1.RegisterRecommendServiceServer(s, b)
	recservev1.RegisterEventServiceServer(s, b)
	recservev1.RegisterCatalogServiceServer(s, b)
	recservev1.RegisterUserServiceServer(s, b)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	b.addr = lis.Addr().String()
	return b
}

// enter records a call and applies the configured failure and stall.
func (b *backend) enter(ctx context.Context, req proto.Message) error {
	b.mu.Lock()
	n := b.calls
	b.calls++
	var left time.Duration
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	b.deadlines = append(b.deadlines, left)
	b.requests = append(b.requests, proto.Clone(req))
	md, _ := metadata.FromIncomingContext(ctx)
	b.metadata = append(b.metadata, md)
	b.mu.Unlock()
	if b.stall != nil {
		select {
		case <-time.After(b.stall(n)):
		case <-ctx.Done():
			b.mu.Lock()
			b.cancelled++
			b.mu.Unlock()
			return ctx.Err()
		}
	}
	if n < b.failFirst {
		code := b.failCode
		if code == codes.OK {
			code = codes.Unavailable
		}
		return status.Errorf(code, "failing call %d", n)
	}
	return nil
}

func (b *backend) callCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *backend) Recommend(ctx context.Context, req *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.RecommendResponse{
		Items: []*recservev1.ScoredItem{{ItemId: "i1", Score: 0.5, Category: "books"}, {ItemId: "i2", Score: 0.25}},
		Model: "demo", ModelVersion: "v7", RequestId: b.addr,
		Source: recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY,
	}, nil
}

func (b *backend) SimilarItems(ctx context.Context, req *recservev1.SimilarItemsRequest) (*recservev1.SimilarItemsResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.SimilarItemsResponse{
		Items: []*recservev1.ScoredItem{{ItemId: "i3", Score: 0.9}}, Model: "demo", ModelVersion: "v7", RequestId: b.addr,
	}, nil
}

func (b *backend) BatchRecommend(ctx context.Context, req *recservev1.BatchRecommendRequest) (*recservev1.BatchRecommendResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	resp := &recservev1.BatchRecommendResponse{Model: "demo", ModelVersion: "v7", RequestId: b.addr}
	for _, u := range req.GetUserIds() {
		resp.Results = append(resp.Results, &recservev1.UserRecommendations{
			UserId: u, Items: []*recservev1.ScoredItem{{ItemId: "i1", Score: 1}},
			Source: recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL,
		})
	}
	return resp, nil
}

func (b *backend) RecordEvents(ctx context.Context, req *recservev1.RecordEventsRequest) (*recservev1.RecordEventsResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.RecordEventsResponse{Accepted: int32(len(req.GetEvents()))}, nil
}

func (b *backend) UpsertItems(ctx context.Context, req *recservev1.UpsertItemsRequest) (*recservev1.UpsertItemsResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.UpsertItemsResponse{Accepted: int32(len(req.GetItems()))}, nil
}

func (b *backend) SetAvailability(ctx context.Context, req *recservev1.SetAvailabilityRequest) (*recservev1.SetAvailabilityResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.SetAvailabilityResponse{Accepted: int32(len(req.GetItems()))}, nil
}

func (b *backend) DeleteItems(ctx context.Context, req *recservev1.DeleteItemsRequest) (*recservev1.DeleteItemsResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.DeleteItemsResponse{Accepted: int32(len(req.GetItemIds()))}, nil
}

func (b *backend) GetItem(ctx context.Context, req *recservev1.GetItemRequest) (*recservev1.GetItemResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.GetItemResponse{
		Item:  &recservev1.CatalogItem{ItemId: req.GetItemId(), Category: "books", Available: proto.Bool(false), Attributes: map[string]string{"price": "9.90"}},
		Model: "demo", ModelVersion: "v7", FoldedIn: true,
	}, nil
}

func (b *backend) EraseUser(ctx context.Context, req *recservev1.EraseUserRequest) (*recservev1.EraseUserResponse, error) {
	if err := b.enter(ctx, req); err != nil {
		return nil, err
	}
	return &recservev1.EraseUserResponse{}, nil
}

func dial(t *testing.T, target string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// calls are the client's methods, each as one call.
var calls = []struct {
	name string
	call func(context.Context, *Client) error
}{
	{"Recommend", func(ctx context.Context, c *Client) error {
		_, err := c.Recommend(ctx, "u1", Query{N: 2})
		return err
	}},
	{"SimilarItems", func(ctx context.Context, c *Client) error {
		_, err := c.SimilarItems(ctx, "i1", Query{})
		return err
	}},
	{"BatchRecommend", func(ctx context.Context, c *Client) error {
		_, err := c.BatchRecommend(ctx, []string{"u1", "u2"}, Query{})
		return err
	}},
	{"RecordEvents", func(ctx context.Context, c *Client) error {
		_, err := c.RecordEvents(ctx, []Event{{UserID: "u1", ItemID: "i1", Type: EventPurchase}})
		return err
	}},
	{"UpsertItems", func(ctx context.Context, c *Client) error {
		_, err := c.UpsertItems(ctx, []CatalogItem{{ID: "i9", Category: "books"}})
		return err
	}},
	{"SetAvailability", func(ctx context.Context, c *Client) error {
		_, err := c.SetAvailability(ctx, []string{"i1"}, false)
		return err
	}},
	{"DeleteItems", func(ctx context.Context, c *Client) error {
		_, err := c.DeleteItems(ctx, []string{"i1"})
		return err
	}},
	{"GetItem", func(ctx context.Context, c *Client) error {
		_, err := c.GetItem(ctx, "i1", "")
		return err
	}},
	{"EraseUser", func(ctx context.Context, c *Client) error {
		return c.EraseUser(ctx, "u1")
	}},
}

func TestRetriesUnavailable(t *testing.T) {
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, &backend{failFirst: 2})
			c := dial(t, b.addr)
			if err := tc.call(context.Background(), c); err != nil {
				t.Fatalf("call failed despite retries: %v", err)
			}
			if got := b.callCount(); got != 3 {
				t.Fatalf("server saw %d attempts, want 3 (2 failures, then success)", got)
			}
		})
	}
}

func TestRetrySendsTheSameEventIDs(t *testing.T) {
	b := startBackend(t, &backend{failFirst: 2})
	c := dial(t, b.addr)
	evs := []Event{
		{UserID: "u1", ItemID: "i1", Type: EventPurchase},
		{ID: "mine", UserID: "u1", ItemID: "i2", Type: EventView, Time: time.Unix(1700000000, 0)},
	}
	n, err := c.RecordEvents(context.Background(), evs)
	if err != nil || n != 2 {
		t.Fatalf("RecordEvents = %d, %v", n, err)
	}
	if evs[0].ID == "" || evs[1].ID != "mine" {
		t.Fatalf("ids written back: %q, %q", evs[0].ID, evs[1].ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range b.requests {
		got := m.(*recservev1.RecordEventsRequest).GetEvents()
		if got[0].GetEventId() != evs[0].ID || got[1].GetEventId() != "mine" {
			t.Fatalf("attempt %d carried ids %q, %q; want %q, mine", i, got[0].GetEventId(), got[1].GetEventId(), evs[0].ID)
		}
		if got[0].GetType() != recservev1.EventType_EVENT_TYPE_PURCHASE || got[1].GetTimestamp().AsTime().Unix() != 1700000000 {
			t.Fatalf("attempt %d: %v", i, got)
		}
	}
}

func TestRetryLimits(t *testing.T) {
	fast := WithRetryPolicy(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, BackoffMultiplier: 1})
	tests := []struct {
		name      string
		failFirst int
		failCode  codes.Code
		opts      []Option
		wantCode  codes.Code
		wantCalls int
	}{
		{"gives up after MaxAttempts", 100, codes.Unavailable, []Option{fast}, codes.Unavailable, 3},
		{"retries disabled", 1, codes.Unavailable, []Option{WithRetryPolicy(RetryPolicy{MaxAttempts: 1})}, codes.Unavailable, 1},
		{"INVALID_ARGUMENT is final", 1, codes.InvalidArgument, nil, codes.InvalidArgument, 1},
		{"NOT_FOUND is final", 1, codes.NotFound, nil, codes.NotFound, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, &backend{failFirst: tc.failFirst, failCode: tc.failCode})
			c := dial(t, b.addr, tc.opts...)
			_, err := c.Recommend(context.Background(), "u1", Query{})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("err = %v, want code %v", err, tc.wantCode)
			}
			if got := b.callCount(); got != tc.wantCalls {
				t.Fatalf("server saw %d attempts, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestDefaultDeadline(t *testing.T) {
	const timeout = 700 * time.Millisecond
	tests := []struct {
		name     string
		opts     []Option
		ctx      time.Duration // caller's timeout; 0: none
		min, max time.Duration // time left when the server got the call; 0, 0: no deadline
	}{
		{"applied when the caller has none", []Option{WithTimeout(timeout)}, 0, time.Millisecond, timeout},
		{"caller's deadline kept", []Option{WithTimeout(timeout)}, 30 * time.Second, 20 * time.Second, 30 * time.Second},
		{"library default", nil, 0, time.Millisecond, DefaultTimeout},
		{"disabled", []Option{WithTimeout(0)}, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, &backend{})
			c := dial(t, b.addr, tc.opts...)
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			for _, call := range calls {
				if err := call.call(ctx, c); err != nil {
					t.Fatalf("%s: %v", call.name, err)
				}
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			for i, left := range b.deadlines {
				if left < tc.min || left > tc.max {
					t.Errorf("%s: server saw %v left, want %v to %v", calls[i].name, left, tc.min, tc.max)
				}
			}
		})
	}
}

func TestDeadlineExceeded(t *testing.T) {
	b := startBackend(t, &backend{stall: func(int) time.Duration { return time.Minute }})
	c := dial(t, b.addr, WithTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := c.Recommend(context.Background(), "u1", Query{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DEADLINE_EXCEEDED", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call took %v despite a 100ms default deadline", d)
	}
}

func TestRoundRobin(t *testing.T) {
	b1, b2 := startBackend(t, &backend{}), startBackend(t, &backend{})
	r := manual.NewBuilderWithScheme("recservetest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: b1.addr}, {Addr: b2.addr}}})
	c := dial(t, r.Scheme()+":///recserve", WithDialOptions(grpc.WithResolvers(r)))

	// Round robin starts picking as soon as one backend is ready; wait for both.
	deadline := time.Now().Add(10 * time.Second)
	for b1.callCount() == 0 || b2.callCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls never reached both backends: %d and %d", b1.callCount(), b2.callCount())
		}
		if _, err := c.Recommend(context.Background(), "u1", Query{}); err != nil {
			t.Fatal(err)
		}
	}
	before1, before2 := b1.callCount(), b2.callCount()
	const n = 40
	for range n {
		if _, err := c.Recommend(context.Background(), "u1", Query{}); err != nil {
			t.Fatal(err)
		}
	}
	got1, got2 := b1.callCount()-before1, b2.callCount()-before2
	if got1+got2 != n || got1 < n/2-2 || got2 < n/2-2 {
		t.Fatalf("%d calls split %d/%d, want about even", n, got1, got2)
	}
}

func TestHedging(t *testing.T) {
	t.Run("slow first attempt", func(t *testing.T) {
		// The first attempt stalls; the hedge sent after 20ms answers.
		b := startBackend(t, &backend{stall: func(n int) time.Duration {
			if n == 0 {
				return time.Minute
			}
			return 0
		}})
		c := dial(t, b.addr, WithHedging(2, 20*time.Millisecond), WithTimeout(10*time.Second))
		start := time.Now()
		rec, err := c.Recommend(context.Background(), "u1", Query{})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("hedged call took %v", d)
		}
		if len(rec.Items) != 2 || rec.ModelVersion != "v7" {
			t.Fatalf("hedged response %+v", rec)
		}
		if got := b.callCount(); got != 2 {
			t.Fatalf("server saw %d attempts, want 2", got)
		}
		// The losing attempt is cancelled.
		waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.cancelled == 1 })
	})
	t.Run("UNAVAILABLE starts the next attempt at once", func(t *testing.T) {
		b := startBackend(t, &backend{failFirst: 1})
		c := dial(t, b.addr, WithHedging(3, time.Minute), WithTimeout(10*time.Second))
		start := time.Now()
		if _, err := c.SimilarItems(context.Background(), "i1", Query{}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v: the hedge waited for its delay", d)
		}
		if got := b.callCount(); got != 2 {
			t.Fatalf("server saw %d attempts, want 2", got)
		}
	})
	t.Run("all attempts UNAVAILABLE", func(t *testing.T) {
		b := startBackend(t, &backend{failFirst: 100})
		c := dial(t, b.addr, WithHedging(3, time.Millisecond))
		_, err := c.BatchRecommend(context.Background(), []string{"u1"}, Query{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err = %v", err)
		}
		if got := b.callCount(); got != 3 {
			t.Fatalf("server saw %d attempts, want 3 (hedged calls are not also retried)", got)
		}
	})
	t.Run("fatal error ends the call", func(t *testing.T) {
		b := startBackend(t, &backend{failFirst: 100, failCode: codes.InvalidArgument})
		c := dial(t, b.addr, WithHedging(3, time.Minute))
		if _, err := c.Recommend(context.Background(), "u1", Query{}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("err = %v", err)
		}
		if got := b.callCount(); got != 1 {
			t.Fatalf("server saw %d attempts, want 1", got)
		}
	})
	t.Run("RecordEvents is not hedged", func(t *testing.T) {
		b := startBackend(t, &backend{stall: func(int) time.Duration { return 200 * time.Millisecond }})
		c := dial(t, b.addr, WithHedging(3, 10*time.Millisecond))
		if _, err := c.RecordEvents(context.Background(), []Event{{UserID: "u", ItemID: "i", Type: EventClick}}); err != nil {
			t.Fatal(err)
		}
		if got := b.callCount(); got != 1 {
			t.Fatalf("server saw %d attempts, want 1", got)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
	}
}

func TestTypedCalls(t *testing.T) {
	b := startBackend(t, &backend{})
	c := dial(t, b.addr)
	ctx := context.Background()
	q := Query{Model: "demo", N: 2, IncludeSeen: true, Filter: Filter{IncludeCategories: []string{"books"}, ExcludeItemIDs: []string{"i9"}}}

	rec, err := c.Recommend(ctx, "u1", q)
	if err != nil {
		t.Fatal(err)
	}
	want := Recommendations{
		Items:  []Item{{ID: "i1", Score: 0.5, Category: "books"}, {ID: "i2", Score: 0.25}},
		Source: SourcePopularity, Model: "demo", ModelVersion: "v7", RequestID: b.addr,
	}
	if got, _ := json.Marshal(rec); string(got) != mustJSON(t, want) {
		t.Fatalf("Recommend = %s, want %s", got, mustJSON(t, want))
	}
	sim, err := c.SimilarItems(ctx, "i1", Query{})
	if err != nil || len(sim.Items) != 1 || sim.Items[0].ID != "i3" || sim.ModelVersion != "v7" {
		t.Fatalf("SimilarItems = %+v, %v", sim, err)
	}
	batch, err := c.BatchRecommend(ctx, []string{"u1", "u2"}, q)
	if err != nil || len(batch.Results) != 2 || batch.Results[1].UserID != "u2" || batch.Results[0].Source != SourceModel {
		t.Fatalf("BatchRecommend = %+v, %v", batch, err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	wantReq := &recservev1.RecommendRequest{
		Model: "demo", UserId: "u1", N: proto.Int32(2), IncludeSeen: true,
		Filter: &recservev1.Filter{IncludeCategories: []string{"books"}, ExcludeItemIds: []string{"i9"}},
	}
	if !proto.Equal(b.requests[0], wantReq) {
		t.Fatalf("Recommend sent %v, want %v", b.requests[0], wantReq)
	}
	if got := b.requests[1].(*recservev1.SimilarItemsRequest); got.N != nil || got.Filter != nil {
		t.Fatalf("zero Query sent n=%v filter=%v, want both unset", got.N, got.Filter)
	}
}

func TestCatalogCalls(t *testing.T) {
	b := startBackend(t, &backend{})
	c := dial(t, b.addr)
	ctx := context.Background()
	items := []CatalogItem{
		{ID: "n1", Category: "books", Attributes: map[string]string{"price": "9.90"}},
		{ID: "n2", Unavailable: true},
	}
	if n, err := c.UpsertItems(ctx, items); err != nil || n != 2 {
		t.Fatalf("UpsertItems = %d, %v", n, err)
	}
	if n, err := c.SetAvailability(ctx, []string{"n1", "n2"}, true); err != nil || n != 2 {
		t.Fatalf("SetAvailability = %d, %v", n, err)
	}
	if n, err := c.DeleteItems(ctx, []string{"n2"}); err != nil || n != 1 {
		t.Fatalf("DeleteItems = %d, %v", n, err)
	}
	got, err := c.GetItem(ctx, "n1", "demo")
	if err != nil {
		t.Fatal(err)
	}
	want := ServedItem{ID: "n1", Category: "books", Available: false, Attributes: map[string]string{"price": "9.90"}, FoldedIn: true, Model: "demo", ModelVersion: "v7"}
	if mustJSON(t, got) != mustJSON(t, want) {
		t.Fatalf("GetItem = %s, want %s", mustJSON(t, got), mustJSON(t, want))
	}
	if err := c.EraseUser(ctx, "u1"); err != nil {
		t.Fatal(err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	wantReqs := []proto.Message{
		&recservev1.UpsertItemsRequest{Items: []*recservev1.CatalogItem{
			{ItemId: "n1", Category: "books", Available: proto.Bool(true), Attributes: map[string]string{"price": "9.90"}},
			{ItemId: "n2", Available: proto.Bool(false)},
		}},
		&recservev1.SetAvailabilityRequest{Items: []*recservev1.ItemAvailability{{ItemId: "n1", Available: true}, {ItemId: "n2", Available: true}}},
		&recservev1.DeleteItemsRequest{ItemIds: []string{"n2"}},
		&recservev1.GetItemRequest{Model: "demo", ItemId: "n1"},
		&recservev1.EraseUserRequest{UserId: "u1"},
	}
	for i, w := range wantReqs {
		if !proto.Equal(b.requests[i], w) {
			t.Errorf("call %d sent %v, want %v", i, b.requests[i], w)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRawStubsShareTheChannel(t *testing.T) {
	b := startBackend(t, &backend{failFirst: 1})
	c := dial(t, b.addr)
	// The generated stubs get the same retry policy and default deadline.
	if _, err := c.RecommendService().Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EventService().RecordEvents(context.Background(), &recservev1.RecordEventsRequest{}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.calls != 3 || b.deadlines[0] <= 0 || b.deadlines[2] <= 0 {
		t.Fatalf("calls %d, deadlines %v", b.calls, b.deadlines)
	}
	if c.Conn() == nil {
		t.Fatal("no Conn")
	}
}

func TestParseEventType(t *testing.T) {
	tests := []struct {
		in   string
		want EventType
		err  bool
	}{
		{"purchase", EventPurchase, false},
		{"PURCHASE", EventPurchase, false},
		{"EVENT_TYPE_ADD_TO_CART", EventAddToCart, false},
		{"impression", EventImpression, false},
		{"rating", EventRating, false},
		{"unspecified", "", true},
		{"event_type_unspecified", "", true},
		{"buy", "", true},
		{"", "", true},
	}
	for _, tc := range tests {
		got, err := ParseEventType(tc.in)
		if got != tc.want || (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrEventType)) {
			t.Errorf("ParseEventType(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestInvalidInputIsNotSent(t *testing.T) {
	b := startBackend(t, &backend{})
	c := dial(t, b.addr)
	if _, err := c.RecordEvents(context.Background(), []Event{{UserID: "u", ItemID: "i", Type: "buy"}}); !errors.Is(err, ErrEventType) {
		t.Fatalf("err = %v, want ErrEventType", err)
	}
	if _, err := c.Recommend(context.Background(), "u", Query{N: -1}); err == nil {
		t.Fatal("negative n accepted")
	}
	if got := b.callCount(); got != 0 {
		t.Fatalf("server saw %d calls", got)
	}
}

func TestDialOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		want string
	}{
		{"no attempts", WithRetryPolicy(RetryPolicy{}), "MaxAttempts"},
		{"no backoff", WithRetryPolicy(RetryPolicy{MaxAttempts: 3}), "backoff"},
		{"one hedge", WithHedging(1, time.Millisecond), "hedging"},
		{"six hedges", WithHedging(6, time.Millisecond), "hedging"},
	}
	for _, tc := range tests {
		if _, err := Dial("127.0.0.1:1", tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestServiceConfig(t *testing.T) {
	type policy struct {
		MaxAttempts          int
		InitialBackoff       string
		MaxBackoff           string
		BackoffMultiplier    float64
		RetryableStatusCodes []string
	}
	type config struct {
		LoadBalancingConfig []map[string]json.RawMessage
		MethodConfig        []struct {
			Name        []struct{ Service, Method string }
			RetryPolicy *policy
		}
		RetryThrottling struct{ MaxTokens, TokenRatio float64 }
	}
	parse := func(o options) config {
		s, err := o.serviceConfig()
		if err != nil {
			t.Fatal(err)
		}
		var c config
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%v in %s", err, s)
		}
		return c
	}
	c := parse(options{retry: DefaultRetryPolicy()})
	if len(c.LoadBalancingConfig) != 1 || c.LoadBalancingConfig[0]["round_robin"] == nil {
		t.Fatalf("load balancing %v", c.LoadBalancingConfig)
	}
	for _, mc := range c.MethodConfig {
		p := mc.RetryPolicy
		if p == nil || p.MaxAttempts != 4 || p.InitialBackoff != "0.05s" || p.MaxBackoff != "1s" || p.BackoffMultiplier != 2 || len(p.RetryableStatusCodes) != 1 || p.RetryableStatusCodes[0] != "UNAVAILABLE" {
			t.Fatalf("%v: retry policy %+v", mc.Name, p)
		}
	}
	if c.RetryThrottling.MaxTokens == 0 {
		t.Fatal("no retry throttling")
	}
	h := parse(options{retry: DefaultRetryPolicy(), hedging: &HedgingPolicy{MaxAttempts: 2, Delay: time.Millisecond}})
	for _, mc := range h.MethodConfig {
		read := mc.Name[0].Service == recservev1.RecommendService_ServiceDesc.ServiceName
		if read != (mc.RetryPolicy == nil) {
			t.Fatalf("with hedging, %v has retry policy %+v (reads must not retry, events must)", mc.Name, mc.RetryPolicy)
		}
	}
}

// selfSigned returns a certificate for localhost and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLSAndCredentials(t *testing.T) {
	cert, pool := selfSigned(t)
	serverCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	clientCreds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})

	t.Run("api key over TLS", func(t *testing.T) {
		b := startBackend(t, &backend{}, grpc.Creds(serverCreds))
		c := dial(t, b.addr, WithTransportCredentials(clientCreds), WithAPIKey("k-123"))
		if _, err := c.Recommend(context.Background(), "u1", Query{}); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if got := b.metadata[0].Get("x-api-key"); len(got) != 1 || got[0] != "k-123" {
			t.Fatalf("x-api-key %q", got)
		}
	})
	t.Run("bearer token over TLS", func(t *testing.T) {
		b := startBackend(t, &backend{}, grpc.Creds(serverCreds))
		c := dial(t, b.addr, WithTransportCredentials(clientCreds), WithBearerToken("jwt.x.y"))
		if _, err := c.RecordEvents(context.Background(), []Event{{UserID: "u", ItemID: "i", Type: EventView}}); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if got := b.metadata[0].Get("authorization"); len(got) != 1 || got[0] != "Bearer jwt.x.y" {
			t.Fatalf("authorization %q", got)
		}
	})
	t.Run("no credentials in cleartext", func(t *testing.T) {
		if c, err := Dial("127.0.0.1:1", WithAPIKey("secret")); err == nil {
			c.Close()
			t.Fatal("Dial accepted an API key over plaintext")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		b := startBackend(t, &backend{}, grpc.Creds(serverCreds))
		c := dial(t, b.addr, WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12})))
		if _, err := c.Recommend(context.Background(), "u1", Query{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("err = %v, want UNAVAILABLE", err)
		}
	})
}
