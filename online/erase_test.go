package online

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// eraser is a store with per-item users and erasure.
type eraser interface {
	store
	ItemUsers(ctx context.Context, items []string) ([][]ItemUser, error)
	EraseUser(ctx context.Context, user string) error
}

var (
	_ eraser = (*Memory)(nil)
	_ eraser = (*Redis)(nil)
)

// setEraseGuard shortens how long an erased user's responses are not cached.
func setEraseGuard(s eraser, d time.Duration) {
	switch s := s.(type) {
	case *Memory:
		s.guard = d
	case *Redis:
		s.guard = d
	}
}

const (
	view     = recservev1.EventType_EVENT_TYPE_VIEW
	click    = recservev1.EventType_EVENT_TYPE_CLICK
	purchase = recservev1.EventType_EVENT_TYPE_PURCHASE
	impress  = recservev1.EventType_EVENT_TYPE_IMPRESSION
)

func TestItemUsersAndErasure(t *testing.T) {
	impls := map[string]func(t *testing.T) eraser{
		"memory": func(*testing.T) eraser { return NewMemory() },
		"redis":  func(t *testing.T) eraser { return newTestRedis(t) },
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) {
			t.Run("item users order and weights", func(t *testing.T) { testItemUsers(t, mk(t)) })
			t.Run("item users are bounded", func(t *testing.T) { testItemUsersBound(t, mk(t)) })
			t.Run("item users of several items", func(t *testing.T) { testItemUsersMany(t, mk(t)) })
			t.Run("erase user", func(t *testing.T) { testEraseUser(t, mk(t)) })
			t.Run("erase user in flight", func(t *testing.T) { testEraseInFlight(t, mk(t)) })
			t.Run("stale gen is not cached", func(t *testing.T) { testStaleGenNotCached(t, mk(t)) })
			t.Run("erase unknown user", func(t *testing.T) { testEraseUnknown(t, mk(t)) })
			t.Run("ids with separators", func(t *testing.T) { testEraseAwkwardIDs(t, mk(t)) })
			t.Run("erase many items", func(t *testing.T) { testEraseManyItems(t, mk(t)) })
		})
	}
}

func record(t *testing.T, s eraser, evs ...*recservev1.Event) {
	t.Helper()
	if _, err := s.Record(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func itemUsersOf(t *testing.T, s eraser, item string) []ItemUser {
	t.Helper()
	us, err := s.ItemUsers(context.Background(), []string{item})
	if err != nil || len(us) != 1 {
		t.Fatalf("ItemUsers(%q): %v %v", item, us, err)
	}
	return us[0]
}

func testItemUsers(t *testing.T, s eraser) {
	if got := itemUsersOf(t, s, "i1"); got != nil {
		t.Fatalf("unknown item: %v, want nil", got)
	}
	record(t, s,
		ev("e1", "alice", "i1", view, 1),
		ev("e2", "bob", "i1", purchase, 5),
		ev("e3", "carol", "i1", impress, 0), // impressions do not count
		ev("e4", "dave", "i1", click, 2),
		ev("e5", "alice", "i1", click, 2.5), // a repeat: to the front, weights summed
		ev("e6", "bob", "i2", view, 1),
	)
	want := []ItemUser{{"alice", 3.5}, {"dave", 2}, {"bob", 5}}
	if got := itemUsersOf(t, s, "i1"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("users of i1 %v, want %v", got, want)
	}
	// A redelivered event adds nothing; fractional weights sum as float64 and round once.
	record(t, s, ev("e5", "alice", "i1", click, 2.5), ev("e7", "dave", "i1", view, 0.1), ev("e8", "dave", "i1", view, 0.2))
	want = []ItemUser{{"dave", float32(2 + 0.1 + 0.2)}, {"alice", 3.5}, {"bob", 5}}
	if got := itemUsersOf(t, s, "i1"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after redelivery and repeats: users of i1 %v, want %v", got, want)
	}
	if got := itemUsersOf(t, s, "i3"); got != nil {
		t.Fatalf("item with only an impression: %v, want nil", got)
	}
}

func testItemUsersBound(t *testing.T, s eraser) {
	var evs []*recservev1.Event
	for i := range RecentMax + 10 {
		evs = append(evs, ev("b"+strconv.Itoa(i), "user"+strconv.Itoa(i), "hot", view, float64(i)))
	}
	// user15 comes back: to the front with its old weight plus the new one;
	// it moves, so the list still reaches back to user10.
	evs = append(evs, ev("again", "user15", "hot", click, 100))
	record(t, s, evs...)
	got := itemUsersOf(t, s, "hot")
	if len(got) != RecentMax {
		t.Fatalf("%d users, want %d", len(got), RecentMax)
	}
	if got[0] != (ItemUser{"user15", 115}) || got[1] != (ItemUser{fmt.Sprintf("user%d", RecentMax+9), float32(RecentMax + 9)}) {
		t.Fatalf("front %v", got[:2])
	}
	seen := map[string]bool{}
	for _, iu := range got {
		if seen[iu.User] {
			t.Fatalf("%s twice in %v", iu.User, got)
		}
		seen[iu.User] = true
	}
	if seen["user9"] || !seen["user10"] {
		t.Fatalf("kept %v: want the %d most recent users (user10 on)", got, RecentMax)
	}
	// A user pushed off the list starts again from their next interaction.
	record(t, s, ev("back", "user0", "hot", view, 1))
	if got := itemUsersOf(t, s, "hot"); got[0] != (ItemUser{"user0", 1}) || len(got) != RecentMax {
		t.Fatalf("user pushed off and back: front %v, %d users", got[0], len(got))
	}
}

func testItemUsersMany(t *testing.T, s eraser) {
	record(t, s,
		ev("e1", "alice", "a", view, 1),
		ev("e2", "bob", "b", purchase, 5),
		ev("e3", "carol", "b", click, 2),
		ev("e4", "alice", "c", view, 1),
	)
	items := []string{"b", "nothing", "a", "b", "c"}
	got, err := s.ItemUsers(context.Background(), items)
	if err != nil || len(got) != len(items) {
		t.Fatalf("ItemUsers: %v %v", got, err)
	}
	want := [][]ItemUser{{{"carol", 2}, {"bob", 5}}, nil, {{"alice", 1}}, {{"carol", 2}, {"bob", 5}}, {{"alice", 1}}}
	for i := range items {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) || (want[i] == nil) != (got[i] == nil) {
			t.Fatalf("ItemUsers[%d] (%s) = %v, want %v", i, items[i], got[i], want[i])
		}
	}
	if got, err := s.ItemUsers(context.Background(), nil); err != nil || len(got) != 0 {
		t.Fatalf("no items: %v %v", got, err)
	}
}

// cacheKeyFor builds a cache key as server.cacheKey does.
func cacheKeyFor(user string, gen int64) string {
	return "model-a/3/" + user + "/" + strconv.FormatInt(gen, 10) + "/0123456789abcdef01234567"
}

func cacheHit(t *testing.T, s eraser, key string) bool {
	t.Helper()
	_, ok, err := s.CacheGet(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func cacheSet(t *testing.T, s eraser, key string) {
	t.Helper()
	if err := s.CacheSet(context.Background(), key, []byte("resp"), time.Hour); err != nil {
		t.Fatal(err)
	}
}

func testEraseUser(t *testing.T, s eraser) {
	ctx := context.Background()
	record(t, s,
		ev("e1", "alice", "i1", view, 1),
		ev("e2", "bob", "i1", purchase, 5),
		ev("e3", "alice", "i2", click, 2),
		ev("e4", "alice", "i3", impress, 0),
		ev("e5", "bob", "i2", view, 1),
	)
	aliceKey, bobKey := cacheKeyFor("alice", 3), cacheKeyFor("bob", 2)
	cacheSet(t, s, aliceKey)
	cacheSet(t, s, bobKey)
	cacheSet(t, s, "plain")
	if !cacheHit(t, s, aliceKey) || !cacheHit(t, s, bobKey) {
		t.Fatal("cached responses missing before the erasure")
	}
	popBefore, _ := s.Popularity(ctx, "i1")

	if err := s.EraseUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	a, err := userOf(s, "alice")
	if err != nil || len(a.Recent) != 0 || len(a.Seen) != 0 || a.Gen != 0 {
		t.Fatalf("alice after erasure: %+v %v, want the empty state", a, err)
	}
	if c, err := s.Counts(ctx, "alice"); err != nil || len(c) != 0 {
		t.Fatalf("alice's counts after erasure: %v %v", c, err)
	}
	us, err := s.ItemUsers(ctx, []string{"i1", "i2", "i3"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[[{bob 5}] [{bob 1}] []]"; fmt.Sprint(us) != want {
		t.Fatalf("item users after erasing alice: %v, want %s", us, want)
	}
	if cacheHit(t, s, aliceKey) {
		t.Fatal("alice's cached response hit after her erasure")
	}
	if !cacheHit(t, s, bobKey) || !cacheHit(t, s, "plain") {
		t.Fatal("other cached responses lost in alice's erasure")
	}
	b, _ := userOf(s, "bob")
	if len(b.Recent) != 2 || b.Gen != 2 {
		t.Fatalf("bob after alice's erasure: %+v", b)
	}
	if pop, _ := s.Popularity(ctx, "i1"); pop != popBefore {
		t.Fatalf("popularity of i1 %v after the erasure, want %v (an aggregate, kept)", pop, popBefore)
	}

	// Alice comes back: her gen restarts at 0 and reaches 3 again, and the
	// response cached for gen 3 before the erasure still misses.
	record(t, s, ev("n1", "alice", "i4", view, 1), ev("n2", "alice", "i4", view, 1), ev("n3", "alice", "i5", view, 1))
	if a, _ := userOf(s, "alice"); a.Gen != 3 || len(a.Recent) != 3 {
		t.Fatalf("alice back: %+v, want gen 3 and only the new events", a)
	}
	if cacheHit(t, s, aliceKey) {
		t.Fatal("a response cached before the erasure hit once the user's gen reached its old value")
	}
	if got := itemUsersOf(t, s, "i4"); fmt.Sprint(got) != "[{alice 2}]" {
		t.Fatalf("new events after the erasure: users of i4 %v", got)
	}
	// Redelivered pre-erasure events stay deduplicated (the markers are kept).
	if n, err := s.Record(ctx, []*recservev1.Event{ev("e1", "alice", "i1", view, 1)}); err != nil || n != 0 {
		t.Fatalf("redelivered pre-erasure event applied %d times (%v)", n, err)
	}
}

// testEraseInFlight: a Recommend that read the user's state before the erasure
// and stores its response after it must not leave a hit behind, and caching
// resumes after the guard.
func testEraseInFlight(t *testing.T, s eraser) {
	ctx := context.Background()
	const guard = 300 * time.Millisecond
	setEraseGuard(s, guard)
	guardPassed := func() { time.Sleep(2 * guard) }
	if m, ok := s.(*Memory); ok { // a clock the test moves instead
		now := time.Now()
		m.now = func() time.Time { return now }
		guardPassed = func() { m.mu.Lock(); now = now.Add(2 * guard); m.mu.Unlock() }
	}
	// Gen 0 as well as a later gen: at gen 0 the gen check alone cannot tell.
	inFlight0 := cacheKeyFor("alice", 0)
	record(t, s, ev("e1", "alice", "i1", view, 1), ev("e2", "alice", "i2", view, 1))
	inFlight2 := cacheKeyFor("alice", 2)
	if err := s.EraseUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	cacheSet(t, s, inFlight0)
	cacheSet(t, s, inFlight2)
	if cacheHit(t, s, inFlight0) {
		t.Fatal("a response computed before the erasure, stored after it, hit")
	}
	record(t, s, ev("n1", "alice", "i3", view, 1), ev("n2", "alice", "i3", view, 1))
	if cacheHit(t, s, inFlight2) {
		t.Fatal("a response computed before the erasure, stored after it, hit when the gen came back")
	}
	// Other users are cached meanwhile.
	record(t, s, ev("b1", "bob", "i1", view, 1))
	cacheSet(t, s, cacheKeyFor("bob", 1))
	if !cacheHit(t, s, cacheKeyFor("bob", 1)) {
		t.Fatal("bob's response not cached during alice's erasure guard")
	}
	guardPassed()
	fresh := cacheKeyFor("alice", 2)
	cacheSet(t, s, fresh)
	if !cacheHit(t, s, fresh) {
		t.Fatal("alice's responses still not cached after the erasure guard")
	}
	if err := s.EraseUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if cacheHit(t, s, fresh) {
		t.Fatal("a response cached after a first erasure hit after the second")
	}
}

// testStaleGenNotCached: a response for another gen than the user's current
// one is not stored.
func testStaleGenNotCached(t *testing.T, s eraser) {
	record(t, s, ev("e1", "alice", "i1", view, 1), ev("e2", "alice", "i2", view, 1))
	cacheSet(t, s, cacheKeyFor("alice", 1))
	cacheSet(t, s, cacheKeyFor("alice", 3))
	cacheSet(t, s, cacheKeyFor("alice", 2))
	if cacheHit(t, s, cacheKeyFor("alice", 1)) || cacheHit(t, s, cacheKeyFor("alice", 3)) || !cacheHit(t, s, cacheKeyFor("alice", 2)) {
		t.Fatal("want only the response for the current gen 2 cached")
	}
	cacheSet(t, s, cacheKeyFor("nobody", 0))
	if !cacheHit(t, s, cacheKeyFor("nobody", 0)) {
		t.Fatal("a user without events (gen 0) not cached")
	}
}

func testEraseUnknown(t *testing.T, s eraser) {
	record(t, s, ev("e1", "bob", "i1", view, 1))
	if err := s.EraseUser(context.Background(), "nobody"); err != nil {
		t.Fatalf("erasing an unknown user: %v", err)
	}
	if b, _ := userOf(s, "bob"); b.Gen != 1 || fmt.Sprint(itemUsersOf(t, s, "i1")) != "[{bob 1}]" {
		t.Fatalf("bob after erasing an unknown user: %+v, %v", b, itemUsersOf(t, s, "i1"))
	}
}

// testEraseAwkwardIDs: ids may hold '/' and tabs, which separate the parts of
// cache keys and list entries; erasing one user leaves a user whose id extends
// it alone.
func testEraseAwkwardIDs(t *testing.T, s eraser) {
	ctx := context.Background()
	short, long := "a/b", "a/b/1\tx"
	item := "it\tem/1"
	record(t, s, ev("e1", short, item, view, 1), ev("e2", long, item, click, 2), ev("e3", short, item, view, 1))
	if got, want := itemUsersOf(t, s, item), []ItemUser{{short, 2}, {long, 2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("users of %q: %v, want %v", item, got, want)
	}
	if u, _ := userOf(s, short); len(u.Recent) != 2 || u.Recent[0] != (Interaction{item, 1}) {
		t.Fatalf("%q's recent: %v", short, u.Recent)
	}
	shortKey, longKey := cacheKeyFor(short, 2), cacheKeyFor(long, 1)
	if u, gen, ok := cacheUser(shortKey); !ok || u != short || gen != 2 {
		t.Fatalf("cacheUser(%q) = %q %d %v", shortKey, u, gen, ok)
	}
	cacheSet(t, s, shortKey)
	cacheSet(t, s, longKey)
	if err := s.EraseUser(ctx, short); err != nil {
		t.Fatal(err)
	}
	if got := itemUsersOf(t, s, item); fmt.Sprint(got) != fmt.Sprint([]ItemUser{{long, 2}}) {
		t.Fatalf("after erasing %q: users of %q: %v", short, item, got)
	}
	if cacheHit(t, s, shortKey) || !cacheHit(t, s, longKey) {
		t.Fatalf("after erasing %q: its response hits %v, %q's %v", short, cacheHit(t, s, shortKey), long, cacheHit(t, s, longKey))
	}
	if u, _ := userOf(s, long); u.Gen != 1 {
		t.Fatalf("%q after erasing %q: %+v", long, short, u)
	}
}

// testEraseManyItems: a user with more items than one erase chunk and than the
// recent list holds leaves none of their item lists.
func testEraseManyItems(t *testing.T, s eraser) {
	const n = 2*eraseChunk + 7
	var evs []*recservev1.Event
	items := make([]string, n)
	for i := range n {
		items[i] = "m" + strconv.Itoa(i)
		evs = append(evs, ev("a"+strconv.Itoa(i), "alice", items[i], view, 1), ev("b"+strconv.Itoa(i), "bob", items[i], view, 1))
	}
	record(t, s, evs...)
	if err := s.EraseUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	us, err := s.ItemUsers(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range us {
		if fmt.Sprint(u) != "[{bob 1}]" {
			t.Fatalf("users of %s after erasing alice: %v", items[i], u)
		}
	}
}

// commands records the names of the commands a go-redis client sends alone.
type commands struct {
	mu    sync.Mutex
	names []string
}

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.names = append(c.names, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestRedisItemUsersInOneRoundTrip(t *testing.T) {
	r := newTestRedis(t)
	var p pipelines
	r.rdb.AddHook(&p)
	if _, err := r.ItemUsers(context.Background(), []string{"warm"}); err != nil {
		t.Fatal(err)
	}
	p.n.Store(0)
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf("i%d", i)
	}
	if _, err := r.ItemUsers(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if got := p.n.Load(); got != 1 {
		t.Fatalf("%d pipelines for 100 items, want 1", got)
	}
}

// TestRedisCacheSetOneCommand: CacheSet of a user's response is one command
// (the script), and CacheGet stays one GET.
func TestRedisCacheSetOneCommand(t *testing.T) {
	r := newTestRedis(t)
	ctx := context.Background()
	key := cacheKeyFor("alice", 0)
	if err := r.CacheSet(ctx, key, []byte("v"), time.Hour); err != nil { // loads the script
		t.Fatal(err)
	}
	var c commands
	r.rdb.AddHook(&c)
	if err := r.CacheSet(ctx, key, []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.CacheGet(ctx, key); !ok || err != nil {
		t.Fatalf("CacheGet: %v %v", ok, err)
	}
	if fmt.Sprint(c.names) != "[evalsha get]" {
		t.Fatalf("commands %v, want [evalsha get]", c.names)
	}
}

// TestRedisEraseUnreachable: EraseUser and ItemUsers report an unreachable
// Redis as errors.
func TestRedisEraseUnreachable(t *testing.T) {
	r := NewRedis(RedisOptions{Addr: "127.0.0.1:1", Timeout: 50 * time.Millisecond})
	defer r.Close()
	ctx := context.Background()
	if err := r.EraseUser(ctx, "u"); err == nil {
		t.Fatal("EraseUser: no error from an unreachable Redis")
	}
	if _, err := r.ItemUsers(ctx, []string{"i"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ItemUsers right after a failure: %v, want ErrUnavailable", err)
	}
	if err := r.EraseUser(ctx, "u"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("EraseUser right after a failure: %v, want ErrUnavailable", err)
	}
	if err := r.CacheSet(ctx, cacheKeyFor("u", 0), []byte("v"), time.Hour); err == nil {
		t.Fatal("CacheSet: no error from an unreachable Redis")
	}
}
