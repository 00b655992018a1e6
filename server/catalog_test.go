package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/trainer"
)

func catalogClient(f *fixture) recservev1.CatalogServiceClient {
	return recservev1.NewCatalogServiceClient(f.conn)
}

func recommendIDs(t *testing.T, f *fixture, req *recservev1.RecommendRequest) []string {
	t.Helper()
	resp, err := f.client.Recommend(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return ids(resp.GetItems())
}

// TestUnavailableItemDisappears: an item set unavailable leaves the very next
// response of every loaded version, comes back with include_unavailable, and
// returns when it is available again.
func TestUnavailableItemDisappears(t *testing.T) {
	f := newFixture(t, Options{Online: online.NewMemory()})
	f.publish(t, testBundle("m", 20, 300, 8, 40))
	f.publish(t, testBundle("m", 20, 300, 8, 41))
	cat := catalogClient(f)
	ctx := context.Background()
	for _, version := range []string{"1", "2"} {
		req := &recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(5), Version: version}
		before := recommendIDs(t, f, req)
		top := before[0]
		if _, err := cat.SetAvailability(ctx, &recservev1.SetAvailabilityRequest{Items: []*recservev1.ItemAvailability{{ItemId: top, Available: false}}}); err != nil {
			t.Fatal(err)
		}
		after := recommendIDs(t, f, req)
		if slices.Contains(after, top) || !slices.Equal(after[:4], before[1:]) {
			t.Fatalf("version %s: after %s went unavailable: %v, want %v shifted", version, top, after, before)
		}
		withUnavailable := proto.Clone(req).(*recservev1.RecommendRequest)
		withUnavailable.Filter = &recservev1.Filter{IncludeUnavailable: true}
		if got := recommendIDs(t, f, withUnavailable); !slices.Contains(got, top) {
			t.Fatalf("version %s: include_unavailable lost %s: %v", version, top, got)
		}
		item, err := cat.GetItem(ctx, &recservev1.GetItemRequest{ItemId: top})
		if err != nil || item.GetItem().GetAvailable() {
			t.Fatalf("GetItem(%s) = %v, %v; want unavailable", top, item, err)
		}
		if _, err := cat.SetAvailability(ctx, &recservev1.SetAvailabilityRequest{Items: []*recservev1.ItemAvailability{{ItemId: top, Available: true}}}); err != nil {
			t.Fatal(err)
		}
		if got := recommendIDs(t, f, req); !slices.Equal(got, before) {
			t.Fatalf("version %s: available again: %v, want %v", version, got, before)
		}
	}
}

// TestCategoryChangeTakesEffect: an upsert moving an item to another category
// applies to the category filter of the next request.
func TestCategoryChangeTakesEffect(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, testBundle("m", 20, 300, 8, 42))
	req := &recservev1.RecommendRequest{UserId: "u2", N: proto.Int32(5), Filter: &recservev1.Filter{IncludeCategories: []string{"c1"}}}
	top := recommendIDs(t, f, req)[0]
	if _, err := catalogClient(f).UpsertItems(context.Background(), &recservev1.UpsertItemsRequest{Items: []*recservev1.CatalogItem{{ItemId: top, Category: "brand-new"}}}); err != nil {
		t.Fatal(err)
	}
	if got := recommendIDs(t, f, req); slices.Contains(got, top) {
		t.Fatalf("%s moved out of c1 but is still returned for c1: %v", top, got)
	}
	req.Filter.IncludeCategories = []string{"brand-new"}
	resp, err := f.client.Recommend(context.Background(), req)
	if err != nil || len(resp.GetItems()) != 1 || resp.GetItems()[0].GetItemId() != top || resp.GetItems()[0].GetCategory() != "brand-new" {
		t.Fatalf("category brand-new: %v, %v; want only %s", resp, err, top)
	}
}

// TestDeletedItemNeverComesBack: a deleted item is in no response, not as a
// similar item, not as a query; also after a restart (the catalog file is
// read back) and after a swap to a version trained before the deletion.
func TestDeletedItemNeverComesBack(t *testing.T) {
	dir := t.TempDir()
	store, err := catalog.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Options{CatalogStore: store})
	b := testBundle("m", 20, 300, 8, 43)
	f.publish(t, b)
	ctx := context.Background()
	req := &recservev1.RecommendRequest{UserId: "u3", N: proto.Int32(10), Filter: &recservev1.Filter{IncludeUnavailable: true}}
	top := recommendIDs(t, f, req)[:2]
	if _, err := catalogClient(f).DeleteItems(ctx, &recservev1.DeleteItemsRequest{ItemIds: top}); err != nil {
		t.Fatal(err)
	}
	check := func(f *fixture, when string) {
		t.Helper()
		for u := range 20 {
			r := proto.Clone(req).(*recservev1.RecommendRequest)
			r.UserId, r.IncludeSeen = fmt.Sprintf("u%d", u), true
			if got := recommendIDs(t, f, r); slices.Contains(got, top[0]) || slices.Contains(got, top[1]) {
				t.Fatalf("%s: deleted %v recommended to u%d: %v", when, top, u, got)
			}
		}
		sim, err := f.client.SimilarItems(ctx, &recservev1.SimilarItemsRequest{ItemId: "i0", N: proto.Int32(300), Filter: &recservev1.Filter{IncludeUnavailable: true}})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(sim.GetItems()); slices.Contains(got, top[0]) || slices.Contains(got, top[1]) || len(got) != 300-1-2 {
			t.Fatalf("%s: similar items hold %d items (want 297) or a deleted one", when, len(got))
		}
		if _, err := f.client.SimilarItems(ctx, &recservev1.SimilarItemsRequest{ItemId: top[0]}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: SimilarItems of a deleted item: %v, want NotFound", when, err)
		}
		if _, err := catalogClient(f).GetItem(ctx, &recservev1.GetItemRequest{ItemId: top[0]}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: GetItem of a deleted item: %v, want NotFound", when, err)
		}
	}
	check(f, "after the delete")

	// A restart: a new server over the same registry and catalog file.
	store.Close()
	store, err = catalog.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g := newFixture(t, Options{Registry: f.reg, CatalogStore: store})
	if err := g.srv.LoadCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	g.refresh(t)
	check(g, "after a restart")

	// A newer version trained before the deletion (it has the items) loads.
	g.publish(t, testBundle("m", 20, 300, 8, 44))
	if v := g.srv.Served()["m"]; v != "2" {
		t.Fatalf("serving %s, want 2", v)
	}
	check(g, "after the swap")
}

// tasteBundle is an iALS model of two tastes: users a0..a19 bought every
// item of category a (ia0..ia9), users b0..b19 every item of category b.
func tasteBundle(t *testing.T) *registry.Bundle {
	t.Helper()
	d := trainer.NewDataset()
	var items []registry.Item
	for _, g := range []string{"a", "b"} {
		for i := range 10 {
			items = append(items, registry.Item{ID: fmt.Sprintf("i%s%d", g, i), Category: g, Available: true})
			for u := range 20 {
				d.Add(fmt.Sprintf("%s%d", g, u), fmt.Sprintf("i%s%d", g, i), 1)
			}
		}
	}
	opts := trainer.DefaultOptions()
	opts.Factors, opts.Iterations, opts.Seed, opts.Workers = 8, 8, 1, 1
	m, err := trainer.Train(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := trainer.Bundle(d, m, items)
	b.Manifest.Model, b.Manifest.Params = "m", opts.Params()
	return b
}

// TestNewItemRecommendedFromItsPurchases: an item the version was not trained
// on, upserted and then bought by a few users of taste a, gets a vector folded
// in from them (the iALS item solve) and is recommended first to another user
// of taste a, labelled folded in, but not to users of taste b.
func TestNewItemRecommendedFromItsPurchases(t *testing.T) {
	store := online.NewMemory()
	f := newFixture(t, Options{Online: store, RefoldInterval: time.Hour}) // only the events' kick refolds
	f.publish(t, tasteBundle(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.srv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	cat := catalogClient(f)
	if _, err := cat.UpsertItems(ctx, &recservev1.UpsertItemsRequest{Items: []*recservev1.CatalogItem{
		{ItemId: "new-1", Category: "c", Attributes: map[string]string{"price": "9.90"}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := cat.GetItem(ctx, &recservev1.GetItemRequest{ItemId: "new-1"})
	if err != nil || !got.GetFoldedIn() || got.GetItem().GetCategory() != "c" || got.GetItem().GetAttributes()["price"] != "9.90" {
		t.Fatalf("GetItem(new-1) = %v, %v", got, err)
	}
	// Before any interaction it has a mean vector: it can be queried.
	sim, err := f.client.SimilarItems(ctx, &recservev1.SimilarItemsRequest{ItemId: "new-1", N: proto.Int32(3)})
	if err != nil || len(sim.GetItems()) != 3 {
		t.Fatalf("SimilarItems(new-1) = %v, %v", sim, err)
	}

	var evs []*recservev1.Event
	for u := range 4 {
		evs = append(evs, purchase(fmt.Sprintf("e%d", u), fmt.Sprintf("a%d", u), "new-1"))
	}
	events.Normalize(evs, time.Now()) // as RecordEvents does: a purchase weighs its type's default
	if _, err := store.Record(ctx, evs); err != nil {
		t.Fatal(err)
	}
	f.srv.ObserveEvents(evs) // as the event consumer does after storing them

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "a7", N: proto.Int32(3)})
		if err != nil {
			t.Fatal(err)
		}
		if top := resp.GetItems()[0]; top.GetItemId() == "new-1" {
			if !top.GetFoldedIn() || top.GetCategory() != "c" {
				t.Fatalf("new-1 not labelled as folded in: %v", top)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new-1 not recommended first to a7 within 10 s: %v", resp.GetItems())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, u := range []string{"b0", "b7"} {
		if got := recommendIDs(t, f, &recservev1.RecommendRequest{UserId: u, N: proto.Int32(3)}); slices.Contains(got, "new-1") {
			t.Fatalf("new-1 recommended to %s, of the other taste: %v", u, got)
		}
	}
	// Deleted, it is gone at once.
	if _, err := cat.DeleteItems(ctx, &recservev1.DeleteItemsRequest{ItemIds: []string{"new-1"}}); err != nil {
		t.Fatal(err)
	}
	if got := recommendIDs(t, f, &recservev1.RecommendRequest{UserId: "a7", N: proto.Int32(20), IncludeSeen: true}); slices.Contains(got, "new-1") {
		t.Fatalf("deleted new-1 still recommended: %v", got)
	}
}

// TestCatalogBadInput: bad batches are INVALID_ARGUMENT naming the field, and
// change nothing.
func TestCatalogBadInput(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, testBundle("m", 20, 300, 8, 46))
	cat := catalogClient(f)
	ctx := context.Background()
	big := make([]*recservev1.CatalogItem, 10000)
	for i := range big {
		big[i] = &recservev1.CatalogItem{ItemId: fmt.Sprintf("x%d", i)}
	}
	attrs := map[string]string{}
	for i := range 65 {
		attrs[fmt.Sprint(i)] = "v"
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"10k items", func() error { _, err := cat.UpsertItems(ctx, &recservev1.UpsertItemsRequest{Items: big}); return err }, "items"},
		{"no items", func() error { _, err := cat.UpsertItems(ctx, &recservev1.UpsertItemsRequest{}); return err }, "items"},
		{"empty id", func() error {
			_, err := cat.UpsertItems(ctx, &recservev1.UpsertItemsRequest{Items: []*recservev1.CatalogItem{{ItemId: "ok"}, {ItemId: ""}}})
			return err
		}, "items[1].item_id"},
		{"too many attributes", func() error {
			_, err := cat.UpsertItems(ctx, &recservev1.UpsertItemsRequest{Items: []*recservev1.CatalogItem{{ItemId: "ok", Attributes: attrs}}})
			return err
		}, "items[0].attributes"},
		{"availability empty id", func() error {
			_, err := cat.SetAvailability(ctx, &recservev1.SetAvailabilityRequest{Items: []*recservev1.ItemAvailability{{ItemId: ""}}})
			return err
		}, "items[0].item_id"},
		{"delete long id", func() error {
			_, err := cat.DeleteItems(ctx, &recservev1.DeleteItemsRequest{ItemIds: []string{"i1", strings.Repeat("x", 257)}})
			return err
		}, "item_ids[1]"},
		{"erase empty user", func() error {
			_, err := recservev1.NewUserServiceClient(f.conn).EraseUser(ctx, &recservev1.EraseUserRequest{})
			return err
		}, "user_id"},
	} {
		err := tc.call()
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v, want InvalidArgument", tc.name, err)
		}
		if got := violationField(err); got != tc.field {
			t.Fatalf("%s: field %q, want %q (%v)", tc.name, got, tc.field, err)
		}
	}
	if n := f.srv.catalog.state.Len(); n != 0 {
		t.Fatalf("rejected batches changed %d items", n)
	}
}

func violationField(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestEraseUser: the user's real-time state and cached responses are gone.
func TestEraseUser(t *testing.T) {
	store := online.NewMemory()
	f := newFixture(t, Options{Online: store})
	f.publish(t, testBundle("m", 20, 300, 8, 47))
	ctx := context.Background()
	if _, err := store.Record(ctx, []*recservev1.Event{purchase("e1", "new-user", "i1"), purchase("e2", "new-user", "i2")}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "new-user"})
	if err != nil || resp.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_FOLD_IN {
		t.Fatalf("before erasure: %v, %v; want a fold-in", resp, err)
	}
	if _, err := recservev1.NewUserServiceClient(f.conn).EraseUser(ctx, &recservev1.EraseUserRequest{UserId: "new-user"}); err != nil {
		t.Fatal(err)
	}
	us, err := store.Users(ctx, []string{"new-user"})
	if err != nil || len(us[0].Recent) != 0 || len(us[0].Seen) != 0 {
		t.Fatalf("state after erasure: %+v, %v", us, err)
	}
	resp, err = f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "new-user"})
	if err != nil || resp.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY {
		t.Fatalf("after erasure: %v, %v; want popular items (no state, no cached answer)", resp, err)
	}
}
