package daemon

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// TestSoak runs mixed traffic for a fixed time on loopback while Redis restarts
// once and a new model version is swapped in: no request may fail, the new
// version must serve, and goroutines and heap must not grow.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test; run without -short")
	}
	const duration = 4 * time.Second
	rp := &redisProc{port: freePort(t)}
	rp.start(t)
	defer rp.stop()
	var regDir string
	addrs, data := startDaemon(t, withKafka, func(c *Config) { c.RedisAddr = rp.addr(); regDir = c.Registry })
	c := dial(t, addrs.GRPC)

	// Traffic runs for duration, and on until the swapped version has served.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	start := time.Now()
	var ok, failed atomic.Int64
	var versions sync.Map
	fail := func(what string, err error) {
		failed.Add(1)
		t.Errorf("%s: %v", what, err)
	}
	traffic := []func(i int){
		func(i int) { // known and unknown users
			user := data.Events[i%len(data.Events)].UserID
			if i%5 == 0 {
				user = fmt.Sprintf("visitor-%d", i%50)
			}
			resp, err := c.rec.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: user, N: proto.Int32(10)})
			if err != nil {
				fail("Recommend", err)
				return
			}
			versions.Store(resp.GetModelVersion(), true)
			ok.Add(1)
		},
		func(i int) {
			_, err := c.rec.SimilarItems(context.Background(), &recservev1.SimilarItemsRequest{ItemId: data.Events[i%len(data.Events)].ItemID})
			if err != nil {
				fail("SimilarItems", err)
				return
			}
			ok.Add(1)
		},
		func(i int) {
			// The embedded broker keeps every event in memory: pacing the events
			// keeps its log small, so the heap check below measures the daemon.
			time.Sleep(5 * time.Millisecond)
			var evs []*recservev1.Event
			for j := 0; j < 20; j++ {
				e := data.Events[(i*20+j)%len(data.Events)]
				evs = append(evs, &recservev1.Event{EventId: fmt.Sprintf("soak-%d-%d", i, j), UserId: e.UserID, ItemId: e.ItemID, Type: recservev1.EventType_EVENT_TYPE_CLICK})
			}
			if _, err := c.ev.RecordEvents(context.Background(), &recservev1.RecordEventsRequest{Events: evs}); err != nil {
				fail("RecordEvents", err)
				return
			}
			ok.Add(1)
		},
		func(i int) {
			_, err := c.rec.BatchRecommend(context.Background(), &recservev1.BatchRecommendRequest{UserIds: []string{data.Events[i%len(data.Events)].UserID, "nobody"}})
			if err != nil {
				fail("BatchRecommend", err)
				return
			}
			ok.Add(1)
		},
	}
	var wg sync.WaitGroup
	for w, f := range append(traffic, traffic[0]) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				f(i)
			}
		}()
	}

	time.Sleep(duration / 5)
	goroutines, heap := usage()
	time.Sleep(duration / 5)
	rp.stop() // Redis goes away under load ...
	time.Sleep(duration / 10)
	rp.start(t) // ... and comes back
	reg, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	swapped := publishSample(t, reg, data, 2) // a model swap under load
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, served := versions.Load(swapped); served {
			break
		}
	}
	time.Sleep(time.Until(start.Add(duration)))
	stop()
	wg.Wait()

	if failed.Load() > 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed, %d succeeded", failed.Load(), ok.Load())
	}
	if _, served := versions.Load(swapped); !served {
		t.Fatalf("version %s never served", swapped)
	}
	// Let shadows, connections and the old version settle, then compare.
	time.Sleep(200 * time.Millisecond)
	goroutinesAfter, heapAfter := usage()
	t.Logf("%d requests, 0 failed; goroutines %d -> %d, heap %d -> %d KiB", ok.Load(), goroutines, goroutinesAfter, heap>>10, heapAfter>>10)
	if goroutinesAfter > goroutines+10 {
		t.Errorf("goroutines grew from %d to %d", goroutines, goroutinesAfter)
	}
	if heapAfter > 2*heap+8<<20 {
		t.Errorf("heap grew from %d to %d KiB", heap>>10, heapAfter>>10)
	}
}

func usage() (goroutines int, heap uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc
}
