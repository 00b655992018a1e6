package server

import (
	"fmt"
	"math"
	"sync"
	"unicode/utf8"

	"github.com/recserve/recserve/index"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/rank"
)

// Ranking limits. A request that re-ranks retrieves RerankCandidates
// candidates per response item (at least n + pinned + exploration slots, at
// most MaxN*RerankCandidates) and ranks them down to n.
const (
	RerankCandidates    = 2
	MaxBoosts           = 100
	MaxPinned           = 100
	MaxPerCategoryLimit = 1000
	MaxExplorationShare = 0.5
	// MaxExposureItems bounds the items whose exposure is kept per model; the
	// least recently counted are dropped first.
	MaxExposureItems = 1 << 20
	maxBoostValueLen = 1024 // as catalog attribute values
)

// rankingActive reports whether r changes anything about retrieval order.
func rankingActive(r *recservev1.Ranking) bool {
	return r.GetDiversityLambda() > 0 || r.GetMaxPerCategory() > 0 || len(r.GetBoosts()) > 0 ||
		len(r.GetPinned()) > 0 || r.GetExplorationShare() > 0
}

func validateRanking(r *recservev1.Ranking, n int) error {
	if r == nil {
		return nil
	}
	if l := r.DiversityLambda; l != nil && !(*l >= 0 && *l <= 1) {
		return badField("ranking.diversity_lambda", "must be between 0 and 1, got %v", *l)
	}
	if c := r.MaxPerCategory; c != nil && (*c < 0 || *c > MaxPerCategoryLimit) {
		return badField("ranking.max_per_category", "must be between 0 and %d, got %d", MaxPerCategoryLimit, *c)
	}
	if e := r.ExplorationShare; e != nil && !(*e >= 0 && *e <= MaxExplorationShare) {
		return badField("ranking.exploration_share", "must be between 0 and %v, got %v", MaxExplorationShare, *e)
	}
	if len(r.GetBoosts()) > MaxBoosts {
		return badField("ranking.boosts", "at most %d entries, got %d", MaxBoosts, len(r.GetBoosts()))
	}
	for i, b := range r.GetBoosts() {
		field := fmt.Sprintf("ranking.boosts[%d]", i)
		if b.GetCategory() == "" && b.GetAttribute() == "" {
			return badField(field, "needs a category or an attribute")
		}
		if b.GetCategory() != "" {
			if err := validateID(field+".category", b.GetCategory()); err != nil {
				return err
			}
		}
		if b.GetAttribute() != "" {
			if err := validateID(field+".attribute", b.GetAttribute()); err != nil {
				return err
			}
		} else if b.GetValue() != "" {
			return badField(field+".value", "needs an attribute")
		}
		if len(b.GetValue()) > maxBoostValueLen || !utf8.ValidString(b.GetValue()) {
			return badField(field+".value", "must be valid UTF-8 of at most %d bytes", maxBoostValueLen)
		}
		if m := b.Multiply; m != nil && (math.IsNaN(*m) || math.IsInf(*m, 0)) {
			return badField(field+".multiply", "must be finite, got %v", *m)
		}
		if math.IsNaN(b.GetAdd()) || math.IsInf(b.GetAdd(), 0) {
			return badField(field+".add", "must be finite, got %v", b.GetAdd())
		}
	}
	if len(r.GetPinned()) > MaxPinned {
		return badField("ranking.pinned", "at most %d entries, got %d", MaxPinned, len(r.GetPinned()))
	}
	pinned := make(map[string]bool, len(r.GetPinned()))
	for i, p := range r.GetPinned() {
		field := fmt.Sprintf("ranking.pinned[%d]", i)
		if err := validateID(field+".item_id", p.GetItemId()); err != nil {
			return err
		}
		if pinned[p.GetItemId()] {
			return badField(field+".item_id", "%q is pinned twice", p.GetItemId())
		}
		pinned[p.GetItemId()] = true
		if p.GetPosition() < 0 || int(p.GetPosition()) >= n {
			return badField(field+".position", "must be between 0 and n-1 (%d), got %d", n-1, p.GetPosition())
		}
	}
	return nil
}

// ranker is a request's re-ranking, with what the ranking reads from the server.
type ranker struct {
	r        *recservev1.Ranking
	exposure *itemExposure // of the request's model
	attrs    func(id string) map[string]string
}

// withDefaults returns the request's ranking with every rule it leaves unset
// taken from the model's default def (nil: none).
func withDefaults(r, def *recservev1.Ranking) *recservev1.Ranking {
	if def == nil {
		return r
	}
	if r == nil {
		return def
	}
	out := &recservev1.Ranking{DiversityLambda: r.DiversityLambda, MaxPerCategory: r.MaxPerCategory, ExplorationShare: r.ExplorationShare,
		Boosts: r.GetBoosts(), Pinned: r.GetPinned()}
	if out.DiversityLambda == nil {
		out.DiversityLambda = def.DiversityLambda
	}
	if out.MaxPerCategory == nil {
		out.MaxPerCategory = def.MaxPerCategory
	}
	if out.ExplorationShare == nil {
		out.ExplorationShare = def.ExplorationShare
	}
	if len(out.Boosts) == 0 {
		out.Boosts = def.GetBoosts()
	}
	if len(out.Pinned) == 0 {
		out.Pinned = def.GetPinned()
	}
	return out
}

// ranker returns the re-ranking of a request for model, nil when it has none.
func (s *Server) ranker(model string, r *recservev1.Ranking) *ranker {
	if !rankingActive(r) {
		return nil
	}
	rk := &ranker{r: r}
	if r.GetExplorationShare() > 0 {
		rk.exposure = s.exposure.of(model, false)
	}
	for _, b := range r.GetBoosts() {
		if b.GetAttribute() != "" {
			rk.attrs = s.catalogAttributes
			break
		}
	}
	return rk
}

// catalogAttributes returns an item's attributes in the run-time catalog
// (versions keep none).
func (s *Server) catalogAttributes(id string) map[string]string {
	it, _ := s.catalog.state.Get(id)
	return it.Attributes
}

// candidates is how many items to retrieve for n.
func (rk *ranker) candidates(n int) int {
	if rk == nil {
		return n
	}
	need := n + len(rk.r.GetPinned()) + rank.ExplorationSlots(rk.r.GetExplorationShare(), n)
	return min(MaxN*RerankCandidates, max(n*RerankCandidates, need))
}

// explores reports whether responses are random (and so not cached).
func (rk *ranker) explores() bool { return rk != nil && rk.r.GetExplorationShare() > 0 }

// category returns the category number of item row.
func (f *itemFilter) category(row int32) int32 {
	if row < f.l.base {
		return f.l.cat[row].Load()
	}
	return f.added.cat[row-f.l.base]
}

// id returns the id of item row.
func (f *itemFilter) id(row int32) string {
	if row < f.l.base {
		return f.s.itemRow.ID(int(row))
	}
	return f.added.ids[row-f.l.base]
}

// rank re-ranks the candidates hits (retrieved for query vector q, nil for
// popular items) into n response items. Pinned items that f does not allow
// (or that do not exist) are dropped.
func (rk *ranker) rank(f *itemFilter, q []float32, hits []index.Result, n int) []*recservev1.ScoredItem {
	r := rk.r
	in := rank.Input{Candidates: make([]rank.Candidate, len(hits)), Vector: f.vector}
	for i, h := range hits {
		in.Candidates[i] = rank.Candidate{Row: h.ID, Score: h.Score, Category: f.category(h.ID)}
	}
	cfg := rank.Config{DiversityLambda: r.GetDiversityLambda(), MaxPerCategory: int(r.GetMaxPerCategory()), ExplorationShare: r.GetExplorationShare()}
	for _, b := range r.GetBoosts() {
		cat := rank.AnyCategory
		if b.GetCategory() != "" {
			cat = rank.NoCategory
			if c, ok := f.cats.numbers[b.GetCategory()]; ok {
				cat = c
			}
		}
		mult := 1.0
		if b.Multiply != nil {
			mult = *b.Multiply
		}
		cfg.Boosts = append(cfg.Boosts, rank.Boost{Category: cat, Attribute: b.GetAttribute(), Value: b.GetValue(), Multiply: mult, Add: b.GetAdd()})
	}
	for _, p := range r.GetPinned() {
		row, ok := f.row(p.GetItemId())
		if !ok || !f.allow(row) {
			continue
		}
		c := rank.Candidate{Row: row, Category: f.category(row)}
		if q != nil {
			c.Score = index.Dot(q, f.vector(row))
		} else {
			for _, h := range hits {
				if h.ID == row {
					c.Score = h.Score
					break
				}
			}
		}
		cfg.Pinned = append(cfg.Pinned, rank.Pin{Item: c, Position: int(p.GetPosition())})
	}
	if rk.attrs != nil {
		attrs := map[int32]map[string]string{}
		in.Attribute = func(row int32, name string) (string, bool) {
			a, ok := attrs[row]
			if !ok {
				a = rk.attrs(f.id(row))
				attrs[row] = a
			}
			v, ok := a[name]
			return v, ok
		}
	}
	if cfg.ExplorationShare > 0 {
		ids := make([]string, len(hits))
		at := make(map[int32]int, len(hits))
		for i, h := range hits {
			ids[i], at[h.ID] = f.id(h.ID), i
		}
		counts := rk.exposure.get(ids)
		in.Exposure = func(row int32) (int64, int64) {
			if i, ok := at[row]; ok {
				return counts[i].impressions, counts[i].clicks
			}
			return 0, 0
		}
	}
	ranked := rank.Rank(in, n, cfg)
	out := make([]*recservev1.ScoredItem, len(ranked))
	slab := make([]recservev1.ScoredItem, len(ranked))
	for i, it := range ranked {
		f.describe(&slab[i], it.Row)
		slab[i].Score, slab[i].RetrievalScore, slab[i].Placement = it.Score, it.Retrieval, it.Placement
		out[i] = &slab[i]
	}
	return out
}

// exposure counts, per model, how often each item was shown (impressions)
// and clicked (clicks and purchases) in the events this server consumed.
type exposure struct {
	mu     sync.Mutex
	models map[string]*itemExposure
}

func newExposure() *exposure { return &exposure{models: map[string]*itemExposure{}} }

// of returns model's counts, creating them when create.
func (e *exposure) of(model string, create bool) *itemExposure {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.models[model]
	if x == nil && create {
		x = &itemExposure{cur: map[string]exposureCount{}}
		e.models[model] = x
	}
	return x
}

type exposureCount struct{ impressions, clicks int64 }

// itemExposure is one model's counts in two generations: a full current
// generation becomes the previous one, and what the previous held and was not
// counted since is dropped, so at most MaxExposureItems items are kept.
type itemExposure struct {
	mu        sync.RWMutex
	cur, prev map[string]exposureCount
}

func (x *itemExposure) add(item string, impressions, clicks int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := x.cur[item]
	if !ok {
		c = x.prev[item]
		if len(x.cur) >= MaxExposureItems/2 {
			x.prev, x.cur = x.cur, make(map[string]exposureCount, MaxExposureItems/2)
		}
	}
	c.impressions += impressions
	c.clicks += clicks
	x.cur[item] = c
}

// get returns the counts of items (zero for items never counted).
func (x *itemExposure) get(items []string) []exposureCount {
	out := make([]exposureCount, len(items))
	if x == nil {
		return out
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	for i, id := range items {
		c, ok := x.cur[id]
		if !ok {
			c = x.prev[id]
		}
		out[i] = c
	}
	return out
}

// observe counts an event: impressions, and clicks and purchases as clicks.
func (e *exposure) observe(model string, ev *recservev1.Event) {
	var imp, clicks int64
	switch ev.GetType() {
	case recservev1.EventType_EVENT_TYPE_IMPRESSION:
		imp = 1
	case recservev1.EventType_EVENT_TYPE_CLICK, recservev1.EventType_EVENT_TYPE_PURCHASE:
		clicks = 1
	default:
		return
	}
	if ev.GetItemId() == "" {
		return
	}
	e.of(model, true).add(ev.GetItemId(), imp, clicks)
}

// countsExposure reports whether an event type feeds exposure.
func countsExposure(t recservev1.EventType) bool {
	switch t {
	case recservev1.EventType_EVENT_TYPE_IMPRESSION, recservev1.EventType_EVENT_TYPE_CLICK, recservev1.EventType_EVENT_TYPE_PURCHASE:
		return true
	}
	return false
}
