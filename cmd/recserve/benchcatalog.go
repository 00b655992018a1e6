package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// catalogBatch is how many availability changes one SetAvailability carries
// in the catalog phase of "bench serve".
const catalogBatch = 100

// catalogResult is what the catalog phase measured.
type catalogResult struct {
	sent, failed int             // changes acknowledged and batches that failed
	firstError   error           // of the first batch that failed
	effect       []time.Duration // probes: acknowledgement to the first response without the item, sorted
	probeErrors  int
}

// catalogLoad applies availability changes to random items at rate changes
// per second in batches of catalogBatch, and meanwhile probes how long a
// change takes to show: it sets a user's top item unavailable and asks for the
// user's recommendations until the item is gone, timing from the
// acknowledgement, then makes the item available again. It runs until ctx is
// done.
func catalogLoad(ctx context.Context, addr string, items, users int, rate float64) (*catalogResult, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cat, rec := recservev1.NewCatalogServiceClient(conn), recservev1.NewRecommendServiceClient(conn)
	res := &catalogResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() { // the stream of changes
		rng := rand.New(rand.NewPCG(1, 2))
		every := time.Duration(float64(time.Second) * catalogBatch / rate)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			req := &recservev1.SetAvailabilityRequest{Items: make([]*recservev1.ItemAvailability, catalogBatch)}
			for i := range req.Items {
				req.Items[i] = &recservev1.ItemAvailability{ItemId: benchItemID(rng.IntN(items)), Available: rng.IntN(2) == 0}
			}
			_, err := cat.SetAvailability(ctx, req)
			mu.Lock()
			if err != nil && ctx.Err() == nil {
				res.failed++
				if res.firstError == nil {
					res.firstError = err
				}
			} else if err == nil {
				res.sent += catalogBatch
			}
			mu.Unlock()
		}
	})
	wg.Go(func() { // the probes
		rng := rand.New(rand.NewPCG(3, 4))
		for ctx.Err() == nil {
			d, err := probeCatalog(ctx, cat, rec, benchUserID(rng.IntN(users)))
			mu.Lock()
			if err != nil {
				res.probeErrors++
			} else {
				res.effect = append(res.effect, d)
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	wg.Wait()
	if ctx.Err() != nil && res.probeErrors > 0 {
		res.probeErrors-- // the probe that ctx cut short
	}
	slices.Sort(res.effect)
	return res, nil
}

// probeCatalog times one change to effect: user's top item set unavailable,
// from the acknowledgement to the first response without it.
func probeCatalog(ctx context.Context, cat recservev1.CatalogServiceClient, rec recservev1.RecommendServiceClient, user string) (time.Duration, error) {
	req := &recservev1.RecommendRequest{Model: benchModel, UserId: user, N: proto.Int32(10)}
	resp, err := rec.Recommend(ctx, req)
	if err != nil || len(resp.GetItems()) == 0 {
		return 0, err
	}
	item := resp.GetItems()[0].GetItemId()
	set := func(available bool) error {
		_, err := cat.SetAvailability(ctx, &recservev1.SetAvailabilityRequest{Items: []*recservev1.ItemAvailability{{ItemId: item, Available: available}}})
		return err
	}
	if err := set(false); err != nil {
		return 0, err
	}
	acked := time.Now()
	defer set(true) //nolint:errcheck // the stream of changes flips items anyway
	for {
		resp, err := rec.Recommend(ctx, req)
		if err != nil {
			return 0, err
		}
		if !slices.ContainsFunc(resp.GetItems(), func(it *recservev1.ScoredItem) bool { return it.GetItemId() == item }) {
			return time.Since(acked), nil
		}
	}
}
