package server

import (
	"context"

	"github.com/recserve/recserve/index"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Recommend returns the top-N items for one user.
func (s *Server) Recommend(ctx context.Context, req *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	n, err := validateRecommend(req)
	if err != nil {
		return nil, toStatus(err)
	}
	snap, err := s.snapshot(req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	items, source := snap.recommend(req.GetUserId(), n, req.GetFilter(), req.GetIncludeSeen())
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.RecommendResponse{
		Items:        items,
		Model:        snap.model,
		ModelVersion: snap.version,
		RequestId:    s.requestID(),
		Source:       source,
	}, nil
}

// BatchRecommend answers Recommend for several users from one snapshot.
func (s *Server) BatchRecommend(ctx context.Context, req *recservev1.BatchRecommendRequest) (*recservev1.BatchRecommendResponse, error) {
	n, err := validateBatch(req)
	if err != nil {
		return nil, toStatus(err)
	}
	snap, err := s.snapshot(req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &recservev1.BatchRecommendResponse{Model: snap.model, ModelVersion: snap.version, RequestId: s.requestID()}
	for _, user := range req.GetUserIds() {
		if err := ctx.Err(); err != nil {
			return nil, toStatus(err)
		}
		items, source := snap.recommend(user, n, req.GetFilter(), req.GetIncludeSeen())
		resp.Results = append(resp.Results, &recservev1.UserRecommendations{UserId: user, Items: items, Source: source})
	}
	return resp, nil
}

// SimilarItems returns the items scoring highest against an item's embedding.
func (s *Server) SimilarItems(ctx context.Context, req *recservev1.SimilarItemsRequest) (*recservev1.SimilarItemsResponse, error) {
	n, err := validateSimilar(req)
	if err != nil {
		return nil, toStatus(err)
	}
	snap, err := s.snapshot(req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	row, ok := snap.itemRow[req.GetItemId()]
	if !ok {
		return nil, toStatus(&notFound{field: "item_id", value: req.GetItemId(), err: errItemNotFound})
	}
	f := compileFilter(snap, req.GetFilter())
	f.self = row
	hits := snap.items.Search(snap.itemVector(row), n, f.fn())
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.SimilarItemsResponse{
		Items:        snap.scored(hits),
		Model:        snap.model,
		ModelVersion: snap.version,
		RequestId:    s.requestID(),
	}, nil
}

// recommend retrieves a user's items; users the model does not know get popular items.
func (s *snapshot) recommend(user string, n int, filter *recservev1.Filter, includeSeen bool) ([]*recservev1.ScoredItem, recservev1.RecommendationSource) {
	f := compileFilter(s, filter)
	u, known := s.userRow[user]
	if !known {
		return s.popularItems(n, f), recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY
	}
	if !includeSeen {
		f.seenUser = u
	}
	hits := s.items.Search(s.userVector(u), n, f.fn())
	return s.scored(hits), recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL
}

// popularItems returns the n most popular items that pass f.
func (s *snapshot) popularItems(n int, f *itemFilter) []*recservev1.ScoredItem {
	out := make([]*recservev1.ScoredItem, 0, n)
	for i, it := range s.popular {
		if len(out) == n {
			break
		}
		if f.allow(it) {
			out = append(out, s.item(it, s.popScore[i]))
		}
	}
	return out
}

func (s *snapshot) scored(hits []index.Result) []*recservev1.ScoredItem {
	out := make([]*recservev1.ScoredItem, len(hits))
	for i, h := range hits {
		out[i] = s.item(h.ID, h.Score)
	}
	return out
}

func (s *snapshot) item(row int32, score float32) *recservev1.ScoredItem {
	it := &s.bundle.Items[row]
	return &recservev1.ScoredItem{ItemId: it.ID, Score: score, Category: it.Category}
}
