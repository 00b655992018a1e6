package server

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/rank"
)

func rankedRecommend(t *testing.T, f *fixture, user string, n int32, r *recservev1.Ranking) []*recservev1.ScoredItem {
	t.Helper()
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: user, N: proto.Int32(n), Ranking: r})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetItems()
}

func perCategory(items []*recservev1.ScoredItem) map[string]int {
	out := map[string]int{}
	for _, it := range items {
		out[it.GetCategory()]++
	}
	return out
}

// TestRankingCategoryCap: max_per_category bounds every category of the response.
func TestRankingCategoryCap(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	f.publish(t, testBundle("m", 30, 400, 8, 60))
	for u := range 10 {
		user := fmt.Sprintf("u%d", u)
		plain := rankedRecommend(t, f, user, 10, nil)
		for _, cap := range []int32{1, 2} {
			got := rankedRecommend(t, f, user, 10, &recservev1.Ranking{MaxPerCategory: proto.Int32(cap)})
			for c, k := range perCategory(got) {
				if k > int(cap) {
					t.Fatalf("%s cap %d: %d items of %s: %v", user, cap, k, c, ids(got))
				}
			}
			if cap == 2 && len(got) != 10 {
				t.Fatalf("%s cap 2: %d items, want 10", user, len(got))
			}
		}
		// The first item is the plain first; scores are the retrieval scores.
		got := rankedRecommend(t, f, user, 10, &recservev1.Ranking{MaxPerCategory: proto.Int32(2)})
		if got[0].GetItemId() != plain[0].GetItemId() || got[0].GetRetrievalScore() != plain[0].GetScore() || got[0].GetScore() != plain[0].GetScore() {
			t.Fatalf("%s: first %v, plain first %v", user, got[0], plain[0])
		}
	}
	// Six categories (one, "rare", of 1% of the items, seldom among the first
	// candidates) and a cap of 1: one item of each, the rest retrieved again
	// from the categories not yet full.
	for u := range 10 {
		if got := rankedRecommend(t, f, fmt.Sprintf("u%d", u), 10, &recservev1.Ranking{MaxPerCategory: proto.Int32(1)}); len(got) != 6 {
			t.Fatalf("u%d cap 1: %d items %v, want one of each of the 6 categories", u, len(got), ids(got))
		}
	}
}

// TestRankingBoost: a boosted category and a boosted catalog attribute move up.
func TestRankingBoost(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	f.publish(t, testBundle("m", 30, 400, 8, 61))
	plain := rankedRecommend(t, f, "u3", 30, nil)
	got := rankedRecommend(t, f, "u3", 10, &recservev1.Ranking{Boosts: []*recservev1.Boost{{Category: "c3", Add: 1000}}})
	var wantC3 []string
	for _, it := range plain {
		if it.GetCategory() == "c3" {
			wantC3 = append(wantC3, it.GetItemId())
		}
	}
	if len(wantC3) < 3 || !slices.Equal(ids(got)[:3], wantC3[:3]) {
		t.Fatalf("boosted c3: %v, want c3 items %v first", ids(got), wantC3)
	}
	if got[0].GetScore() != got[0].GetRetrievalScore()+1000 {
		t.Fatalf("score %v, retrieval %v: want +1000", got[0].GetScore(), got[0].GetRetrievalScore())
	}
	// An attribute set in the run-time catalog.
	target := plain[15] // among the 2n candidates of n 10, not in the plain top 10
	if _, err := catalogClient(f).UpsertItems(context.Background(), &recservev1.UpsertItemsRequest{Items: []*recservev1.CatalogItem{
		{ItemId: target.GetItemId(), Category: target.GetCategory(), Attributes: map[string]string{"promo": "yes"}}}}); err != nil {
		t.Fatal(err)
	}
	got = rankedRecommend(t, f, "u3", 10, &recservev1.Ranking{Boosts: []*recservev1.Boost{{Attribute: "promo", Value: "yes", Multiply: proto.Float64(1), Add: 1000}}})
	if got[0].GetItemId() != target.GetItemId() {
		t.Fatalf("attribute boost: %v, want %s first", ids(got), target.GetItemId())
	}
	// Wrong value: nothing moves.
	got = rankedRecommend(t, f, "u3", 10, &recservev1.Ranking{Boosts: []*recservev1.Boost{{Attribute: "promo", Value: "no", Add: 1000}}})
	if !slices.Equal(ids(got), ids(plain[:10])) {
		t.Fatalf("non-matching boost: %v, want %v", ids(got), ids(plain[:10]))
	}
}

// TestRankingPinned: a pinned item is at its position, once; pinned items the
// filter, availability or seen rules exclude are dropped.
func TestRankingPinned(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	b := testBundle("m", 30, 400, 8, 62)
	f.publish(t, b)
	plain := rankedRecommend(t, f, "u4", 100, nil)
	far, top := plain[80].GetItemId(), plain[0].GetItemId()
	seen := b.Items[b.Seen(4)[0]].ID
	got := rankedRecommend(t, f, "u4", 6, &recservev1.Ranking{Pinned: []*recservev1.PinnedItem{
		{ItemId: far, Position: 2}, {ItemId: top, Position: 4}, {ItemId: seen, Position: 0}, {ItemId: "i9", Position: 1}, {ItemId: "nope", Position: 1}}})
	want := []string{plain[1].GetItemId(), plain[2].GetItemId(), far, plain[3].GetItemId(), top, plain[4].GetItemId()}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	for i, it := range got {
		if wantP := map[bool]string{true: rank.PlacementPinned}[i == 2 || i == 4]; it.GetPlacement() != wantP {
			t.Fatalf("position %d placement %q, want %q", i, it.GetPlacement(), wantP)
		}
	}
	if got[2].GetRetrievalScore() != plain[80].GetScore() {
		t.Fatalf("pinned retrieval score %v, want %v", got[2].GetRetrievalScore(), plain[80].GetScore())
	}
	// The category filter applies to pinned items too.
	excluded := &recservev1.RecommendRequest{UserId: "u4", N: proto.Int32(6), Filter: &recservev1.Filter{ExcludeCategories: []string{plain[80].GetCategory()}},
		Ranking: &recservev1.Ranking{Pinned: []*recservev1.PinnedItem{{ItemId: far, Position: 2}}}}
	if got := recommendIDs(t, f, excluded); slices.Contains(got, far) {
		t.Fatalf("filtered pinned item served: %v", got)
	}
}

// TestRankingExploration: exploration slots, labelled, go to items with few
// impressions (counted by ObserveEvents), are not cached, and an item that
// gathered impressions stops getting them.
func TestRankingExploration(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}, Online: online.NewMemory()})
	f.publish(t, testBundle("m", 30, 400, 8, 63))
	cands := rankedRecommend(t, f, "u5", 10*RerankCandidates, nil) // the candidates of n 10
	var evs []*recservev1.Event
	impressions := func(id string, k int) {
		for range k {
			evs = append(evs, &recservev1.Event{EventId: fmt.Sprintf("e%d", len(evs)), UserId: "x", ItemId: id, Type: recservev1.EventType_EVENT_TYPE_IMPRESSION})
		}
	}
	x, y := cands[12].GetItemId(), cands[17].GetItemId()
	for _, it := range cands {
		if id := it.GetItemId(); id != x && id != y {
			impressions(id, rank.DefaultExplorationThreshold)
		}
	}
	f.srv.ObserveEvents(evs)
	f.srv.ObserveEvents(evs) // counted once per event id
	r := &recservev1.Ranking{ExplorationShare: proto.Float64(0.2)}
	got := rankedRecommend(t, f, "u5", 10, r)
	if !slices.Equal(ids(got[:8]), ids(cands[:8])) {
		t.Fatalf("ranked part %v, want %v", ids(got[:8]), ids(cands[:8]))
	}
	explored := ids(got[8:])
	slices.Sort(explored)
	if want := []string{x, y}; len(got) != 10 || !slices.Equal(explored, want) && !slices.Equal(explored, []string{y, x}) ||
		got[8].GetPlacement() != rank.PlacementExploration || got[9].GetPlacement() != rank.PlacementExploration {
		t.Fatalf("exploration %v, want %v labelled", got[8:], want)
	}
	evs = nil
	impressions(x, rank.DefaultExplorationThreshold)
	for i := range evs {
		evs[i].EventId = "x" + evs[i].EventId
	}
	evs = append(evs, &recservev1.Event{EventId: "click", UserId: "x", ItemId: x, Type: recservev1.EventType_EVENT_TYPE_CLICK})
	f.srv.ObserveEvents(evs)
	got = rankedRecommend(t, f, "u5", 10, r) // a cached response would still explore x
	if slices.Contains(ids(got), x) || got[9].GetItemId() != y || got[9].GetPlacement() != rank.PlacementExploration || got[8].GetItemId() != cands[8].GetItemId() {
		t.Fatalf("after %s's impressions: %v", x, got)
	}
	if c := f.srv.exposure.of("m", false).get([]string{x}); c[0].impressions != 100 || c[0].clicks != 1 {
		t.Fatalf("exposure of %s: %+v", x, c[0])
	}
}

// TestRankingDiversity: lambda 1 returns items less alike than the plain top.
func TestRankingDiversity(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	b := testBundle("m", 30, 400, 8, 64)
	f.publish(t, b)
	dim := b.Manifest.Dim
	row := map[string]int{}
	for i, it := range b.Items {
		row[it.ID] = i
	}
	meanSim := func(items []*recservev1.ScoredItem) float64 {
		var sum float64
		var k int
		for i := range items {
			for j := range i {
				a, c := b.ItemVectors[row[items[i].GetItemId()]*dim:][:dim], b.ItemVectors[row[items[j].GetItemId()]*dim:][:dim]
				sum += float64(index.Dot(a, c)) / math.Sqrt(float64(index.Dot(a, a))*float64(index.Dot(c, c)))
				k++
			}
		}
		return sum / float64(k)
	}
	plain := rankedRecommend(t, f, "u6", 10, nil)
	if got := rankedRecommend(t, f, "u6", 10, &recservev1.Ranking{DiversityLambda: proto.Float64(0)}); !slices.Equal(ids(got), ids(plain)) {
		t.Fatalf("lambda 0: %v, want %v", ids(got), ids(plain))
	}
	diverse := rankedRecommend(t, f, "u6", 10, &recservev1.Ranking{DiversityLambda: proto.Float64(1)})
	if len(diverse) != 10 || meanSim(diverse) >= meanSim(plain)-0.05 {
		t.Fatalf("lambda 1 mean similarity %.3f, plain %.3f", meanSim(diverse), meanSim(plain))
	}
}

// TestBatchRecommendRanking: every user of a batch gets the ranking.
func TestBatchRecommendRanking(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	b := testBundle("m", 30, 400, 8, 65)
	f.publish(t, b)
	users := []string{"u1", "u2", "u3"}
	pin := ""
	for i, it := range b.Items {
		if it.Available && !slices.Contains(b.Seen(1), int32(i)) && !slices.Contains(b.Seen(2), int32(i)) && !slices.Contains(b.Seen(3), int32(i)) {
			pin = it.ID
			break
		}
	}
	resp, err := f.client.BatchRecommend(context.Background(), &recservev1.BatchRecommendRequest{UserIds: users, N: proto.Int32(8),
		Ranking: &recservev1.Ranking{MaxPerCategory: proto.Int32(1), Pinned: []*recservev1.PinnedItem{{ItemId: pin, Position: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range resp.GetResults() {
		items := res.GetItems()
		if len(items) < 2 || items[1].GetItemId() != pin || items[1].GetPlacement() != rank.PlacementPinned {
			t.Fatalf("%s: %v, want %s pinned at 1", res.GetUserId(), items, pin)
		}
		rest := slices.Delete(slices.Clone(items), 1, 2)
		for c, k := range perCategory(rest) {
			if k > 1 {
				t.Fatalf("%s: %d of %s: %v", res.GetUserId(), k, c, ids(items))
			}
		}
	}
}

// TestRankingInvalid: bad ranking input is INVALID_ARGUMENT naming the field.
func TestRankingInvalid(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, testBundle("m", 10, 100, 8, 66))
	long := string(make([]byte, 300))
	many := func(k int) []*recservev1.Boost {
		out := make([]*recservev1.Boost, k)
		for i := range out {
			out[i] = &recservev1.Boost{Category: "c1", Add: 1}
		}
		return out
	}
	manyPins := make([]*recservev1.PinnedItem, MaxPinned+1)
	for i := range manyPins {
		manyPins[i] = &recservev1.PinnedItem{ItemId: fmt.Sprintf("i%d", i), Position: 0}
	}
	for _, tc := range []struct {
		r     *recservev1.Ranking
		field string
	}{
		{&recservev1.Ranking{DiversityLambda: proto.Float64(1.5)}, "ranking.diversity_lambda"},
		{&recservev1.Ranking{DiversityLambda: proto.Float64(math.NaN())}, "ranking.diversity_lambda"},
		{&recservev1.Ranking{MaxPerCategory: proto.Int32(-1)}, "ranking.max_per_category"},
		{&recservev1.Ranking{MaxPerCategory: proto.Int32(1001)}, "ranking.max_per_category"},
		{&recservev1.Ranking{ExplorationShare: proto.Float64(0.6)}, "ranking.exploration_share"},
		{&recservev1.Ranking{ExplorationShare: proto.Float64(-0.1)}, "ranking.exploration_share"},
		{&recservev1.Ranking{Boosts: many(MaxBoosts + 1)}, "ranking.boosts"},
		{&recservev1.Ranking{Boosts: []*recservev1.Boost{{Category: "c1"}, {Add: 1}}}, "ranking.boosts[1]"},
		{&recservev1.Ranking{Boosts: []*recservev1.Boost{{Category: "c1", Multiply: proto.Float64(math.Inf(1))}}}, "ranking.boosts[0].multiply"},
		{&recservev1.Ranking{Boosts: []*recservev1.Boost{{Category: "c1", Add: math.NaN()}}}, "ranking.boosts[0].add"},
		{&recservev1.Ranking{Boosts: []*recservev1.Boost{{Attribute: long, Value: "x"}}}, "ranking.boosts[0].attribute"},
		{&recservev1.Ranking{Boosts: []*recservev1.Boost{{Category: "c1", Value: "x"}}}, "ranking.boosts[0].value"},
		{&recservev1.Ranking{Pinned: manyPins}, "ranking.pinned"},
		{&recservev1.Ranking{Pinned: []*recservev1.PinnedItem{{ItemId: "", Position: 0}}}, "ranking.pinned[0].item_id"},
		{&recservev1.Ranking{Pinned: []*recservev1.PinnedItem{{ItemId: "i1", Position: 10}}}, "ranking.pinned[0].position"},
		{&recservev1.Ranking{Pinned: []*recservev1.PinnedItem{{ItemId: "i1", Position: -1}}}, "ranking.pinned[0].position"},
		{&recservev1.Ranking{Pinned: []*recservev1.PinnedItem{{ItemId: "i1"}, {ItemId: "i1", Position: 1}}}, "ranking.pinned[1].item_id"},
	} {
		_, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(10), Ranking: tc.r})
		if status.Code(err) != codes.InvalidArgument || violationField(err) != tc.field {
			t.Errorf("%v: %v (field %q), want INVALID_ARGUMENT naming %s", tc.r, err, violationField(err), tc.field)
		}
		_, err = f.client.BatchRecommend(context.Background(), &recservev1.BatchRecommendRequest{UserIds: []string{"u1"}, N: proto.Int32(10), Ranking: tc.r})
		if status.Code(err) != codes.InvalidArgument || violationField(err) != tc.field {
			t.Errorf("batch %v: %v, want INVALID_ARGUMENT naming %s", tc.r, err, tc.field)
		}
	}
	// Limits that hold are fine.
	ok := &recservev1.Ranking{DiversityLambda: proto.Float64(1), MaxPerCategory: proto.Int32(1000), ExplorationShare: proto.Float64(0.5),
		Boosts: many(MaxBoosts), Pinned: []*recservev1.PinnedItem{{ItemId: "unknown", Position: 9}}}
	if _, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(10), Ranking: ok}); err != nil {
		t.Fatal(err)
	}
}

// TestModelDefaultRanking: SetRanking gives requests that leave a rule unset
// the model's default, survives in the registry for other replicas, shows in
// GetModel, is validated, and clears.
func TestModelDefaultRanking(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	f.publish(t, testBundle("m", 30, 400, 8, 65))
	admin := recservev1.NewModelAdminServiceClient(f.conn)
	ctx := context.Background()
	maxCat := func(items []*recservev1.ScoredItem) int {
		most := 0
		for _, k := range perCategory(items) {
			most = max(most, k)
		}
		return most
	}
	if got := rankedRecommend(t, f, "u1", 10, nil); maxCat(got) < 2 {
		t.Fatalf("plain answer already has one item per category: %v", ids(got))
	}
	resp, err := admin.SetRanking(ctx, &recservev1.SetRankingRequest{Model: "m", Ranking: &recservev1.Ranking{MaxPerCategory: proto.Int32(1)}})
	if err != nil || resp.GetModel().GetRanking().GetMaxPerCategory() != 1 {
		t.Fatalf("SetRanking: %v, %v", resp, err)
	}
	if got := rankedRecommend(t, f, "u1", 10, nil); maxCat(got) != 1 {
		t.Fatalf("default cap 1 not applied: %v", ids(got))
	}
	// A rule the request sets wins; the others still come from the default.
	if got := rankedRecommend(t, f, "u1", 10, &recservev1.Ranking{MaxPerCategory: proto.Int32(3)}); maxCat(got) < 2 || maxCat(got) > 3 {
		t.Fatalf("request cap 3 over default 1: %v", perCategory(got))
	}
	if got := rankedRecommend(t, f, "u1", 10, &recservev1.Ranking{DiversityLambda: proto.Float64(0)}); maxCat(got) != 1 {
		t.Fatalf("request without a cap lost the default cap: %v", perCategory(got))
	}
	// Another replica over the same registry adopts it.
	g := newFixture(t, Options{Registry: f.reg, Index: index.Options{Kind: index.KindExact}})
	g.refresh(t)
	if got := rankedRecommend(t, g, "u1", 10, nil); maxCat(got) != 1 {
		t.Fatalf("second replica ignores the default: %v", perCategory(got))
	}
	if _, err := admin.SetRanking(ctx, &recservev1.SetRankingRequest{Model: "m", Ranking: &recservev1.Ranking{DiversityLambda: proto.Float64(2)}}); status.Code(err) != codes.InvalidArgument || violationField(err) != "ranking.diversity_lambda" {
		t.Fatalf("invalid default: %v", err)
	}
	if _, err := admin.SetRanking(ctx, &recservev1.SetRankingRequest{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	if got := rankedRecommend(t, f, "u1", 10, nil); maxCat(got) < 2 {
		t.Fatalf("cleared default still applied: %v", perCategory(got))
	}
}
