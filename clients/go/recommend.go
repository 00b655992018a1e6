package recserveclient

import (
	"context"
	"fmt"
	"math"
	"strings"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Filter restricts which items may be returned; the zero Filter allows every
// available item.
type Filter struct {
	// Only items in one of these categories (empty: any category).
	IncludeCategories []string `json:"include_categories,omitempty"`
	// Never items in these categories.
	ExcludeCategories []string `json:"exclude_categories,omitempty"`
	// Never these items.
	ExcludeItemIDs []string `json:"exclude_item_ids,omitempty"`
	// Also items marked unavailable.
	IncludeUnavailable bool `json:"include_unavailable,omitempty"`
}

// Query holds what Recommend, SimilarItems and BatchRecommend have in common; the
// zero Query asks the default model for the server's default count (10).
type Query struct {
	// Model name; empty selects the server's default model.
	Model string
	// N is the number of items, 1 to 1000; 0 leaves the server's default.
	N      int
	Filter Filter
	// IncludeSeen also returns items the user already interacted with
	// (Recommend and BatchRecommend only).
	IncludeSeen bool
}

// Item is one returned item.
type Item struct {
	ID       string  `json:"item_id"`
	Score    float32 `json:"score"`
	Category string  `json:"category,omitempty"`
	// FoldedIn: the served version was not trained on the item (it was added at
	// run time); its vector is folded in.
	FoldedIn bool `json:"folded_in,omitempty"`
}

// Source says how a user's recommendations were produced.
type Source string

// The sources of recommendations.
const (
	SourceModel      Source = "model"      // the user's embedding from the model
	SourcePopularity Source = "popularity" // unknown user without events: popular items
	SourceFoldIn     Source = "fold_in"    // unknown user with events: a folded-in vector
)

// Recommendations answers Recommend.
type Recommendations struct {
	Items        []Item `json:"items"`
	Source       Source `json:"source,omitempty"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
	// RequestID goes back with feedback events (Event.RequestID).
	RequestID string `json:"request_id"`
}

// Similar answers SimilarItems.
type Similar struct {
	Items        []Item `json:"items"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
	RequestID    string `json:"request_id"`
}

// UserRecommendations is one user's part of a batch.
type UserRecommendations struct {
	UserID string `json:"user_id"`
	Items  []Item `json:"items"`
	Source Source `json:"source,omitempty"`
}

// BatchRecommendations answers BatchRecommend: one entry per user, in request
// order, all from one model version.
type BatchRecommendations struct {
	Results      []UserRecommendations `json:"results"`
	Model        string                `json:"model"`
	ModelVersion string                `json:"model_version"`
	RequestID    string                `json:"request_id"`
}

// Recommend returns the top items for userID.
func (c *Client) Recommend(ctx context.Context, userID string, q Query) (*Recommendations, error) {
	n, err := count(q.N)
	if err != nil {
		return nil, err
	}
	resp, err := c.recs.Recommend(ctx, &recservev1.RecommendRequest{
		Model: q.Model, UserId: userID, N: n, Filter: q.Filter.proto(), IncludeSeen: q.IncludeSeen,
	})
	if err != nil {
		return nil, err
	}
	return &Recommendations{
		Items: items(resp.GetItems()), Source: source(resp.GetSource()),
		Model: resp.GetModel(), ModelVersion: resp.GetModelVersion(), RequestID: resp.GetRequestId(),
	}, nil
}

// SimilarItems returns the items most similar to itemID (never itemID itself).
func (c *Client) SimilarItems(ctx context.Context, itemID string, q Query) (*Similar, error) {
	n, err := count(q.N)
	if err != nil {
		return nil, err
	}
	resp, err := c.recs.SimilarItems(ctx, &recservev1.SimilarItemsRequest{
		Model: q.Model, ItemId: itemID, N: n, Filter: q.Filter.proto(),
	})
	if err != nil {
		return nil, err
	}
	return &Similar{
		Items: items(resp.GetItems()), Model: resp.GetModel(),
		ModelVersion: resp.GetModelVersion(), RequestID: resp.GetRequestId(),
	}, nil
}

// BatchRecommend answers Recommend for 1 to 100 users in one call.
func (c *Client) BatchRecommend(ctx context.Context, userIDs []string, q Query) (*BatchRecommendations, error) {
	n, err := count(q.N)
	if err != nil {
		return nil, err
	}
	resp, err := c.recs.BatchRecommend(ctx, &recservev1.BatchRecommendRequest{
		Model: q.Model, UserIds: userIDs, N: n, Filter: q.Filter.proto(), IncludeSeen: q.IncludeSeen,
	})
	if err != nil {
		return nil, err
	}
	out := &BatchRecommendations{
		Results: make([]UserRecommendations, len(resp.GetResults())),
		Model:   resp.GetModel(), ModelVersion: resp.GetModelVersion(), RequestID: resp.GetRequestId(),
	}
	for i, r := range resp.GetResults() {
		out.Results[i] = UserRecommendations{UserID: r.GetUserId(), Items: items(r.GetItems()), Source: source(r.GetSource())}
	}
	return out, nil
}

// count maps Query.N to the request field: nil for the server's default.
func count(n int) (*int32, error) {
	switch {
	case n == 0:
		return nil, nil
	case n < 0 || n > math.MaxInt32:
		return nil, fmt.Errorf("recserveclient: n = %d out of range", n)
	}
	v := int32(n)
	return &v, nil
}

func (f Filter) proto() *recservev1.Filter {
	if len(f.IncludeCategories) == 0 && len(f.ExcludeCategories) == 0 && len(f.ExcludeItemIDs) == 0 && !f.IncludeUnavailable {
		return nil
	}
	return &recservev1.Filter{
		IncludeCategories:  f.IncludeCategories,
		ExcludeCategories:  f.ExcludeCategories,
		ExcludeItemIds:     f.ExcludeItemIDs,
		IncludeUnavailable: f.IncludeUnavailable,
	}
}

func items(in []*recservev1.ScoredItem) []Item {
	out := make([]Item, len(in))
	for i, it := range in {
		out[i] = Item{ID: it.GetItemId(), Score: it.GetScore(), Category: it.GetCategory(), FoldedIn: it.GetFoldedIn()}
	}
	return out
}

// source maps RECOMMENDATION_SOURCE_FOLD_IN to "fold_in"; unspecified to "".
func source(s recservev1.RecommendationSource) Source {
	if s == recservev1.RecommendationSource_RECOMMENDATION_SOURCE_UNSPECIFIED {
		return ""
	}
	return Source(strings.ToLower(strings.TrimPrefix(s.String(), "RECOMMENDATION_SOURCE_")))
}
