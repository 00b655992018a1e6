package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"runtime"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/internal/parallel"
	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Recommend returns the top-N items for one user.
func (s *Server) Recommend(ctx context.Context, req *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	start := time.Now()
	n, err := validateRecommend(req)
	if err != nil {
		return nil, toStatus(err)
	}
	v, snap, err := s.route(req.GetModel(), req.GetUserId(), req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	markServed(ctx, snap)
	q := userQuery{id: req.GetUserId(), online: s.onlineUsers(ctx, []string{req.GetUserId()})[0], includeSeen: req.GetIncludeSeen()}
	rk := s.ranker(snap.model, withDefaults(req.GetRanking(), v.ranking))
	resp, err := s.recommend(ctx, snap, q, n, req, rk, v.rankingKey)
	s.stats.request(snap.model, snap.version, s.opts.Clock(), time.Since(start), err != nil)
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetVersion() == "" {
		s.shadow(v, snap, q, n, req.GetFilter(), rk, resp.GetItems())
	}
	return resp, nil
}

// recommend answers one user from one snapshot, through the response cache
// (but for exploration, which is random).
func (s *Server) recommend(ctx context.Context, snap *snapshot, q userQuery, n int, req *recservev1.RecommendRequest, rk *ranker, rankingKey string) (*recservev1.RecommendResponse, error) {
	var key string
	if s.cacheOn() && !rk.explores() { // the key costs a marshal and a hash: only with the cache
		key = cacheKey(snap, q.online.Gen, s.catalog.stamp()+rankingKey, req)
		if resp := s.cached(ctx, key); resp != nil {
			resp.RequestId = s.requestID()
			return resp, nil
		}
	}
	items, source := snap.recommend(q, n, req.GetFilter(), rk)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resp := &recservev1.RecommendResponse{Items: items, Model: snap.model, ModelVersion: snap.version, Source: source}
	if key != "" {
		s.cache(ctx, key, resp)
	}
	resp.RequestId = s.requestID()
	return resp, nil
}

var recommendRPC = metric.WithAttributes(attribute.String("rpc", "Recommend"))

// maxShadows bounds shadow requests in flight; more are dropped, never queued.
const maxShadows = 4

// shadow runs, for a sampled fraction of stable requests, the same request on the
// canary in the background and records how much the two answers overlap. It never
// touches the response.
func (s *Server) shadow(v *view, served *snapshot, q userQuery, n int, filter *recservev1.Filter, rk *ranker, items []*recservev1.ScoredItem) {
	if v.canary == nil || served != v.stable || v.shadow <= 0 || rand.Float64() >= v.shadow {
		return
	}
	select {
	case s.shadowSem <- struct{}{}:
	default:
		return
	}
	stableIDs := make(map[string]struct{}, len(items))
	for _, it := range items {
		stableIDs[it.GetItemId()] = struct{}{}
	}
	canary := v.canary
	s.shadows.Add(1)
	go func() {
		defer func() { <-s.shadowSem; s.shadows.Done() }()
		got, _ := canary.recommend(q, n, filter, rk)
		common := 0
		for _, it := range got {
			if _, ok := stableIDs[it.GetItemId()]; ok {
				common++
			}
		}
		overlap := 1.0
		if m := max(len(got), len(stableIDs)); m > 0 {
			overlap = float64(common) / float64(m)
		}
		s.stats.shadow(canary.model, canary.version, s.opts.Clock(), overlap)
	}()
}

// BatchRecommend answers Recommend for several users, each routed by the traffic
// split. Their real-time state comes in one read of the online store (one Redis
// round trip), and the users are answered on up to GOMAXPROCS goroutines.
func (s *Server) BatchRecommend(ctx context.Context, req *recservev1.BatchRecommendRequest) (*recservev1.BatchRecommendResponse, error) {
	n, err := validateBatch(req)
	if err != nil {
		return nil, toStatus(err)
	}
	v, top, err := s.route(req.GetModel(), "", req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	markServed(ctx, top)
	users := req.GetUserIds()
	states := s.onlineUsers(ctx, users)
	rk := s.ranker(top.model, withDefaults(req.GetRanking(), v.ranking))
	results := make([]*recservev1.UserRecommendations, len(users))
	errs := make([]error, len(users))
	err = parallel.For(ctx, runtime.GOMAXPROCS(0), len(users), func(_, i int) {
		snap, err := v.route(users[i], req.GetVersion())
		if err != nil {
			errs[i] = err
			return
		}
		q := userQuery{id: users[i], online: states[i], includeSeen: req.GetIncludeSeen()}
		items, source := snap.recommend(q, n, req.GetFilter(), rk)
		results[i] = &recservev1.UserRecommendations{UserId: users[i], Items: items, Source: source, ModelVersion: snap.version}
	})
	for _, err := range append([]error{err}, errs...) {
		if err != nil {
			return nil, toStatus(err)
		}
	}
	return &recservev1.BatchRecommendResponse{Model: top.model, ModelVersion: top.version, RequestId: s.requestID(), Results: results}, nil
}

// SimilarItems returns the items scoring highest against an item's embedding.
func (s *Server) SimilarItems(ctx context.Context, req *recservev1.SimilarItemsRequest) (*recservev1.SimilarItemsResponse, error) {
	n, err := validateSimilar(req)
	if err != nil {
		return nil, toStatus(err)
	}
	_, snap, err := s.route(req.GetModel(), "", req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	markServed(ctx, snap)
	f := compileFilter(snap, req.GetFilter())
	row, ok := f.row(req.GetItemId())
	if !ok || row < f.l.base && bit(f.l.gone, row) {
		return nil, toStatus(&notFound{field: "item_id", value: req.GetItemId(), err: errItemNotFound})
	}
	f.self = row
	hits := snap.search(f.vector(row), n, f)
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.SimilarItemsResponse{
		Items:        snap.scored(hits, f),
		Model:        snap.model,
		ModelVersion: snap.version,
		RequestId:    s.requestID(),
	}, nil
}

// onlineUsers reads users' real-time state in one call to the store; without
// a store, or when it fails, the users have none and the answers come from the
// model alone.
func (s *Server) onlineUsers(ctx context.Context, users []string) []online.User {
	if s.opts.Online != nil {
		us, err := s.opts.Online.Users(ctx, users)
		if err == nil && len(us) == len(users) {
			return us
		}
		s.degraded.report(ctx, s.log, "online store unavailable; serving from the model alone", "err", err)
	}
	return make([]online.User, len(users))
}

// cacheKey identifies a response: model version, the user's event generation,
// the catalog's state and the request itself, so a new version, a new event
// of the user, a catalog change or new vectors of added items miss.
func cacheKey(snap *snapshot, gen int64, catalog string, req *recservev1.RecommendRequest) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	b = append(b, catalog...)
	sum := sha256.Sum256(b)
	return snap.model + "/" + snap.version + "/" + req.GetUserId() + "/" + strconv.FormatInt(gen, 10) + "/" + hex.EncodeToString(sum[:12])
}

// cacheOn reports whether Recommend responses are cached.
func (s *Server) cacheOn() bool { return s.opts.Online != nil && s.opts.CacheTTL >= 0 }

func (s *Server) cached(ctx context.Context, key string) *recservev1.RecommendResponse {
	b, ok, err := s.opts.Online.CacheGet(ctx, key)
	s.metrics.cacheReqs.Add(ctx, 1, recommendRPC)
	if ok {
		s.metrics.cacheHits.Add(ctx, 1, recommendRPC)
	}
	if err != nil {
		s.degraded.report(ctx, s.log, "response cache unavailable", "err", err)
		return nil
	}
	if !ok {
		return nil
	}
	resp := &recservev1.RecommendResponse{}
	if proto.Unmarshal(b, resp) != nil {
		return nil
	}
	return resp
}

func (s *Server) cache(ctx context.Context, key string, resp *recservev1.RecommendResponse) {
	b, err := proto.Marshal(resp)
	if err != nil {
		return
	}
	if err := s.opts.Online.CacheSet(ctx, key, b, s.opts.CacheTTL); err != nil {
		s.degraded.report(ctx, s.log, "response cache unavailable", "err", err)
	}
}

// userQuery is who a recommendation is for.
type userQuery struct {
	id          string
	online      online.User
	includeSeen bool
}

// recommend retrieves a user's items. A user the model does not know is folded in
// from their recent events, or gets popular items when there are none. With a
// ranker, it retrieves rk.candidates(n) items and re-ranks them to n.
func (s *snapshot) recommend(q userQuery, n int, filter *recservev1.Filter, rk *ranker) ([]*recservev1.ScoredItem, recservev1.RecommendationSource) {
	f := compileFilter(s, filter)
	if !q.includeSeen {
		f.excludeOnline(q.online.Seen)
	}
	u, known := s.userRow.Row(q.id)
	switch {
	case known:
		if !q.includeSeen {
			f.excludeSeen(s.bundle.Seen(int(u)))
		}
		return s.retrieve(rk, f, s.userVector(u), n), recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL
	case len(q.online.Recent) > 0:
		if v := s.foldIn(q.online.Recent); v != nil {
			return s.retrieve(rk, f, v, n), recservev1.RecommendationSource_RECOMMENDATION_SOURCE_FOLD_IN
		}
	}
	hits := s.popularHits(rk.candidates(n), f)
	if rk == nil {
		return s.scored(hits, f), recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY
	}
	return rk.rank(f, nil, hits, n), recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY
}

// retrieve returns the best n items for q that f allows, re-ranked by rk
// when there is one.
func (s *snapshot) retrieve(rk *ranker, f *itemFilter, q []float32, n int) []*recservev1.ScoredItem {
	if rk == nil {
		return s.scored(s.search(q, n, f), f)
	}
	return s.rankRetrieved(rk, f, q, rk.candidates(n), n)
}

// rankRetrieved retrieves k candidates for q and re-ranks them into n items.
// When a category cap leaves fewer than n, it retrieves k more from the
// categories not yet full, up to maxRefills times, so that a cap shortens
// the list only when the allowed catalog runs out.
func (s *snapshot) rankRetrieved(rk *ranker, f *itemFilter, q []float32, k, n int) []*recservev1.ScoredItem {
	hits := s.search(q, k, f)
	out := rk.rank(f, q, hits, n)
	limit := int(rk.r.GetMaxPerCategory())
	for range maxRefills {
		if limit == 0 || len(out) >= n {
			break
		}
		g := *f // the same rules, and the full categories and retrieved items excluded
		g.excludeCat = make([]bool, len(f.cats.names))
		copy(g.excludeCat, f.excludeCat)
		per := map[int32]int{}
		for _, it := range out {
			if row, ok := f.row(it.GetItemId()); ok && it.GetPlacement() == "" {
				if per[f.category(row)]++; per[f.category(row)] >= limit && int(f.category(row)) < len(g.excludeCat) {
					g.excludeCat[f.category(row)] = true
				}
			}
		}
		g.excludeItems = make(map[int32]struct{}, len(f.excludeItems)+len(hits))
		for id := range f.excludeItems {
			g.excludeItems[id] = struct{}{}
		}
		for _, h := range hits {
			g.excludeItems[h.ID] = struct{}{}
		}
		more := s.search(q, k, &g)
		if len(more) == 0 {
			break
		}
		hits = append(hits, more...)
		out = rk.rank(f, q, hits, n)
	}
	return out
}

// maxRefills bounds the extra retrievals a category cap may cause.
const maxRefills = 3

// search retrieves the best n items for q that f allows: from the version's
// index and from the items added to the catalog since.
func (s *snapshot) search(q []float32, n int, f *itemFilter) []index.Result {
	return s.live.searchAdded(q, n, f, s.items.Search(q, n, f.fn()))
}

// foldIn computes a user vector from recent interactions with items the model
// knows (weights of repeated items add up); nil when it knows none of them.
func (s *snapshot) foldIn(recent []online.Interaction) []float32 {
	weights := map[int32]float32{}
	var rows []int32
	for _, r := range recent {
		row, ok := s.itemRow.Row(r.Item)
		if !ok {
			continue
		}
		if _, dup := weights[row]; !dup {
			rows = append(rows, row)
		}
		weights[row] += r.Weight
	}
	if len(rows) == 0 {
		return nil
	}
	ws := make([]float32, len(rows))
	for i, row := range rows {
		ws[i] = weights[row]
	}
	return s.folder.FoldIn(rows, ws)
}

// popularHits returns the n most popular items that pass f, with their
// share of training interactions as the score.
func (s *snapshot) popularHits(n int, f *itemFilter) []index.Result {
	out := make([]index.Result, 0, n)
	for i, it := range s.popular {
		if len(out) == n {
			break
		}
		if f.allow(it) {
			out = append(out, index.Result{ID: it, Score: s.popScore[i]})
		}
	}
	return out
}

// scored turns hits into response items, all in one allocation.
func (s *snapshot) scored(hits []index.Result, f *itemFilter) []*recservev1.ScoredItem {
	out := make([]*recservev1.ScoredItem, len(hits))
	slab := make([]recservev1.ScoredItem, len(hits))
	for i, h := range hits {
		f.describe(&slab[i], h.ID)
		slab[i].Score = h.Score
		out[i] = &slab[i]
	}
	return out
}

// describe fills in the id, category and origin of item row.
func (f *itemFilter) describe(it *recservev1.ScoredItem, row int32) {
	cats := f.l.cats.Load() // at least as new as f.cats: it only grows
	if row < f.l.base {
		it.ItemId, it.Category = f.s.itemRow.ID(int(row)), cats.names[f.l.cat[row].Load()]
		return
	}
	i := row - f.l.base
	it.ItemId, it.Category, it.FoldedIn = f.added.ids[i], cats.names[f.added.cat[i]], true
}

// vector returns the embedding of item row.
func (f *itemFilter) vector(row int32) []float32 {
	if row < f.l.base {
		return f.s.itemVector(row)
	}
	return f.added.vec(int(row-f.l.base), f.s.dim)
}

// catalogItem returns an item as served: its category and availability with
// every catalog change applied, and whether it was added since training.
func (s *snapshot) catalogItem(id string) (*recservev1.CatalogItem, bool, bool) {
	f := compileFilter(s, nil)
	row, ok := f.row(id)
	if !ok || row < f.l.base && bit(f.l.gone, row) {
		return nil, false, false
	}
	var d recservev1.ScoredItem
	f.describe(&d, row)
	var avail bool
	if row < f.l.base {
		avail = !bit(f.l.unavail, row)
	} else {
		avail = !f.added.unavail[row-f.l.base]
	}
	return &recservev1.CatalogItem{ItemId: id, Category: d.Category, Available: &avail}, d.FoldedIn, true
}
