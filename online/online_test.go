package online

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// store is what both implementations offer.
type store interface {
	Record(ctx context.Context, evs []*recservev1.Event) (int, error)
	Users(ctx context.Context, users []string) ([]User, error)
	Counts(ctx context.Context, user string) (map[string]int64, error)
	Popularity(ctx context.Context, item string) (float64, error)
	CacheGet(ctx context.Context, key string) ([]byte, bool, error)
	CacheSet(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

var prefixSeq atomic.Int64

// testRedisAddr is the Redis server the tests use (.ci/run starts one on 127.0.0.1:6379).
func testRedisAddr() string {
	if a := os.Getenv("RECSERVE_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func newTestRedis(t *testing.T) *Redis {
	t.Helper()
	prefix := fmt.Sprintf("rstest:%d:%d:", time.Now().UnixNano(), prefixSeq.Add(1))
	r := NewRedis(RedisOptions{Addr: testRedisAddr(), Prefix: prefix, TTL: time.Hour, Timeout: time.Second})
	if err := r.Ping(context.Background()); err != nil {
		r.Close()
		t.Fatalf("these tests need a Redis server at %s (set RECSERVE_TEST_REDIS; .ci/run starts one): %v", testRedisAddr(), err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := r.rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			r.rdb.Del(ctx, keys...)
		}
		r.Close()
	})
	return r
}

// userOf reads one user's state from s.
func userOf(s store, user string) (User, error) {
	us, err := s.Users(context.Background(), []string{user})
	if err != nil {
		return User{}, err
	}
	return us[0], nil
}

func ev(id, user, item string, typ recservev1.EventType, w float64) *recservev1.Event {
	return &recservev1.Event{EventId: id, UserId: user, ItemId: item, Type: typ, Weight: w}
}

func TestStores(t *testing.T) {
	impls := map[string]func(t *testing.T) store{
		"memory": func(*testing.T) store { return NewMemory() },
		"redis":  func(t *testing.T) store { return newTestRedis(t) },
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) {
			t.Run("record and read", func(t *testing.T) { testRecord(t, mk(t)) })
			t.Run("dedupe", func(t *testing.T) { testDedupe(t, mk(t)) })
			t.Run("recent is bounded", func(t *testing.T) { testRecentBound(t, mk(t)) })
			t.Run("cache", func(t *testing.T) { testCache(t, mk(t)) })
			t.Run("users", func(t *testing.T) { testUsers(t, mk(t)) })
		})
	}
}

func testRecord(t *testing.T, s store) {
	ctx := context.Background()
	u0, err := userOf(s, "alice")
	if err != nil || len(u0.Recent) != 0 || len(u0.Seen) != 0 || u0.Gen != 0 {
		t.Fatalf("unknown user: %+v %v", u0, err)
	}
	n, err := s.Record(ctx, []*recservev1.Event{
		ev("e1", "alice", "i1", recservev1.EventType_EVENT_TYPE_VIEW, 1),
		ev("e2", "alice", "i2", recservev1.EventType_EVENT_TYPE_PURCHASE, 5),
		ev("e3", "alice", "i3", recservev1.EventType_EVENT_TYPE_IMPRESSION, 0),
		ev("e4", "bob", "i2", recservev1.EventType_EVENT_TYPE_CLICK, 2),
	})
	if err != nil || n != 4 {
		t.Fatalf("Record: %d %v", n, err)
	}
	u, err := userOf(s, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := []Interaction{{"i2", 5}, {"i1", 1}}
	if fmt.Sprint(u.Recent) != fmt.Sprint(want) {
		t.Fatalf("recent %v, want %v", u.Recent, want)
	}
	if _, ok := u.Seen["i3"]; ok || len(u.Seen) != 2 {
		t.Fatalf("seen %v: want i1, i2 and not the impression", u.Seen)
	}
	if u.Gen != 3 {
		t.Fatalf("gen %d, want 3 (one per applied event)", u.Gen)
	}
	counts, err := s.Counts(ctx, "alice")
	if err != nil || counts["view"] != 1 || counts["purchase"] != 1 || counts["impression"] != 1 {
		t.Fatalf("counts %v %v", counts, err)
	}
	pop, err := s.Popularity(ctx, "i2")
	if err != nil || pop != 7 {
		t.Fatalf("popularity of i2 %v %v, want 7", pop, err)
	}
}

func testDedupe(t *testing.T, s store) {
	ctx := context.Background()
	batch := []*recservev1.Event{ev("d1", "u", "a", recservev1.EventType_EVENT_TYPE_PURCHASE, 5), ev("d2", "u", "b", recservev1.EventType_EVENT_TYPE_VIEW, 1)}
	if n, err := s.Record(ctx, batch); err != nil || n != 2 {
		t.Fatalf("first: %d %v", n, err)
	}
	// Redelivery, plus one new event and a duplicate inside the batch.
	again := append(batch, ev("d3", "u", "c", recservev1.EventType_EVENT_TYPE_VIEW, 1), ev("d3", "u", "c", recservev1.EventType_EVENT_TYPE_VIEW, 1))
	if n, err := s.Record(ctx, again); err != nil || n != 1 {
		t.Fatalf("redelivery applied %d (%v), want 1", n, err)
	}
	counts, _ := s.Counts(ctx, "u")
	pop, _ := s.Popularity(ctx, "a")
	u, _ := userOf(s, "u")
	if counts["purchase"] != 1 || counts["view"] != 2 || pop != 5 || len(u.Recent) != 3 || u.Gen != 3 {
		t.Fatalf("after redelivery: counts %v, pop %v, user %+v", counts, pop, u)
	}
}

func testRecentBound(t *testing.T, s store) {
	ctx := context.Background()
	var evs []*recservev1.Event
	for i := 0; i < RecentMax+10; i++ {
		evs = append(evs, ev("r"+strconv.Itoa(i), "u", "item"+strconv.Itoa(i), recservev1.EventType_EVENT_TYPE_VIEW, 1))
	}
	if _, err := s.Record(ctx, evs); err != nil {
		t.Fatal(err)
	}
	u, _ := userOf(s, "u")
	if len(u.Recent) != RecentMax || u.Recent[0].Item != fmt.Sprintf("item%d", RecentMax+9) || len(u.Seen) != RecentMax+10 {
		t.Fatalf("recent %d (first %v), seen %d", len(u.Recent), u.Recent[0], len(u.Seen))
	}
}

func testUsers(t *testing.T, s store) {
	ctx := context.Background()
	if _, err := s.Record(ctx, []*recservev1.Event{
		ev("e1", "alice", "i1", recservev1.EventType_EVENT_TYPE_VIEW, 1),
		ev("e2", "bob", "i2", recservev1.EventType_EVENT_TYPE_PURCHASE, 5),
		ev("e3", "bob", "i3", recservev1.EventType_EVENT_TYPE_CLICK, 2),
	}); err != nil {
		t.Fatal(err)
	}
	names := []string{"bob", "nobody", "alice", "bob"}
	us, err := s.Users(ctx, names)
	if err != nil || len(us) != len(names) {
		t.Fatalf("Users: %d states, %v", len(us), err)
	}
	for i, name := range names {
		one, err := userOf(s, name)
		if err != nil || fmt.Sprint(us[i]) != fmt.Sprint(one) {
			t.Fatalf("Users[%d] = %+v, %s alone = %+v (%v)", i, us[i], name, one, err)
		}
	}
	if len(us[0].Recent) != 2 || us[0].Gen != 2 || len(us[2].Seen) != 1 || us[1].Gen != 0 {
		t.Fatalf("states %+v", us)
	}
}

// pipelines counts the pipelines a go-redis client sends.
type pipelines struct{ n atomic.Int64 }

func (p *pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (p *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.n.Add(1)
		return next(ctx, cmds)
	}
}

func TestRedisUsersInOneRoundTrip(t *testing.T) {
	r := newTestRedis(t)
	var p pipelines
	r.rdb.AddHook(&p)
	if _, err := r.Users(context.Background(), []string{"warm"}); err != nil { // a connection's set-up is a pipeline too
		t.Fatal(err)
	}
	p.n.Store(0)
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
	}
	if _, err := r.Users(context.Background(), users); err != nil {
		t.Fatal(err)
	}
	if got := p.n.Load(); got != 1 {
		t.Fatalf("%d pipelines for 100 users, want 1", got)
	}
}

func testCache(t *testing.T, s store) {
	ctx := context.Background()
	if _, ok, err := s.CacheGet(ctx, "k"); ok || err != nil {
		t.Fatalf("empty cache hit: %v %v", ok, err)
	}
	if err := s.CacheSet(ctx, "k", []byte("v1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.CacheGet(ctx, "k"); !ok || err != nil || string(v) != "v1" {
		t.Fatalf("cache get: %q %v %v", v, ok, err)
	}
	if err := s.CacheSet(ctx, "short", []byte("x"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	if _, ok, _ := s.CacheGet(ctx, "short"); ok {
		t.Fatal("expired entry returned")
	}
}

func TestRedisUnreachableReturnsErrors(t *testing.T) {
	r := NewRedis(RedisOptions{Addr: "127.0.0.1:1", Timeout: 50 * time.Millisecond})
	defer r.Close()
	ctx := context.Background()
	if _, err := r.Users(ctx, []string{"u"}); err == nil {
		t.Fatal("Users: no error from an unreachable Redis")
	}
	// Marked down after the failure: the next calls fail fast without dialing.
	if _, _, err := r.CacheGet(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CacheGet right after a failure: %v, want ErrUnavailable", err)
	}
	if _, err := r.Record(ctx, []*recservev1.Event{ev("x", "u", "i", recservev1.EventType_EVENT_TYPE_VIEW, 1)}); err == nil {
		t.Fatal("Record: no error from an unreachable Redis")
	}
}

// TestPipelineSpanName: a pipeline's span is named after its distinct
// commands, whatever the number of users read, and records how many it sent.
func TestPipelineSpanName(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	r := NewRedis(RedisOptions{Addr: testRedisAddr(), Prefix: fmt.Sprintf("rstest:%d:", time.Now().UnixNano()), TracerProvider: tp, Timeout: time.Second})
	defer r.Close()
	if _, err := r.Users(context.Background(), []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range rec.Ended() {
		if s.Name() != "redis lrange smembers get" {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == "db.redis.pipeline_length" && a.Value.AsInt64() == 9 {
				return
			}
		}
		t.Fatalf("span %q without db.redis.pipeline_length 9: %v", s.Name(), s.Attributes())
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	t.Fatalf("no span \"redis lrange smembers get\" among %q", names)
}
