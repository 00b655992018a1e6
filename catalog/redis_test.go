package catalog

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

var redisSeq atomic.Int64

// newTestRedis returns a store under a prefix of its own on the test Redis
// server (127.0.0.1:6379 or RECSERVE_TEST_REDIS), removing its keys after the test.
func newTestRedis(t *testing.T) (*Redis, *redis.Client, string) {
	t.Helper()
	addr := cmp.Or(os.Getenv("RECSERVE_TEST_REDIS"), "127.0.0.1:6379")
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		t.Fatalf("these tests need a Redis server at %s (set RECSERVE_TEST_REDIS; .ci/run starts one): %v", addr, err)
	}
	prefix := fmt.Sprintf("catalogtest:%d:%d:", time.Now().UnixNano(), redisSeq.Add(1))
	t.Cleanup(func() {
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return NewRedis(rdb, prefix), rdb, prefix
}

func redisLoad(t *testing.T, r *Redis) []Item {
	t.Helper()
	items, err := r.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// TestRedisSaveLoad: saved states load back, across stores on one prefix.
func TestRedisSaveLoad(t *testing.T) {
	r, rdb, prefix := newTestRedis(t)
	ctx := context.Background()
	if got := redisLoad(t, r); len(got) != 0 {
		t.Fatalf("empty store loads %v", got)
	}
	s := NewState()
	if err := r.Save(ctx, s.Apply([]*recservev1.CatalogRecord{
		upsert("a", "books", nil, map[string]string{"p": "1"}, 1), avail("b", false, 2), del("c", 3),
	})); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(ctx, s.Apply([]*recservev1.CatalogRecord{avail("a", false, 4)})); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := redisLoad(t, r), s.Items(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Load %v, want %v", got, want)
	}
	// Another replica's store on the same prefix sees the same; another
	// prefix sees nothing.
	if got := redisLoad(t, NewRedis(rdb, prefix)); !reflect.DeepEqual(got, s.Items()) {
		t.Fatalf("second store: Load %v", got)
	}
	if got := redisLoad(t, NewRedis(rdb, prefix+"other:")); len(got) != 0 {
		t.Fatalf("other prefix loads %v", got)
	}
	// More items than one HSCAN page.
	var recs []*recservev1.CatalogRecord
	for i := range 2500 {
		recs = append(recs, avail(fmt.Sprint("n", i), i%2 == 0, 10))
	}
	for len(recs) > 0 {
		n := min(len(recs), MaxBatch)
		if err := r.Save(ctx, s.Apply(recs[:n])); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}
	if got := redisLoad(t, r); !reflect.DeepEqual(got, s.Items()) || len(got) != 2503 {
		t.Fatalf("Load of %d items, want %d", len(got), s.Len())
	}
}

// TestRedisOlderDoesNotOverwrite: an older state saved after a newer one (a
// replica behind on the topic) leaves the newer one; the same time replaces.
func TestRedisOlderDoesNotOverwrite(t *testing.T) {
	r, _, _ := newTestRedis(t)
	ctx := context.Background()
	newer := Item{ID: "a", Upserted: true, Category: "new", Available: false, Time: at(10), AvailableTime: at(10)}
	older := Item{ID: "a", Upserted: true, Category: "old", Available: true, Time: at(5), AvailableTime: at(5)}
	gone := Item{ID: "b", Deleted: true, Available: false, Time: at(7), AvailableTime: at(8)}
	if err := r.Save(ctx, []Item{newer, gone}); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(ctx, []Item{older, {ID: "b", Available: true, AvailableTime: at(6)}}); err != nil {
		t.Fatal(err)
	}
	if got := redisLoad(t, r); !reflect.DeepEqual(got, []Item{newer, gone}) {
		t.Fatalf("after saving older states: %v, want %v", got, []Item{newer, gone})
	}
	// Replicas saving concurrently, each its own order of times: the newest wins.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				s := (i*7 + w*13) % 50
				it := Item{ID: "c", Upserted: true, Category: fmt.Sprint("v", s), Available: true, Time: at(100 + s), AvailableTime: at(100 + s)}
				if err := r.Save(ctx, []Item{it}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := redisLoad(t, r)
	if len(got) != 3 || got[2].Category != "v49" || !got[2].Time.Equal(at(149)) {
		t.Fatalf("after concurrent saves: %v, want c at v49", got)
	}
	// The same time again replaces (the script keeps ties): a replay is harmless.
	same := newer
	same.Category = "same-time"
	if err := r.Save(ctx, []Item{same}); err != nil {
		t.Fatal(err)
	}
	if got := redisLoad(t, r); got[0].Category != "same-time" {
		t.Fatalf("same time: %v", got[0])
	}
}
