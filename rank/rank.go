// Package rank re-ranks retrieved candidates into a response: score boosts,
// maximal marginal relevance (diversity), a cap per category, exploration
// slots for under-exposed items chosen by Thompson sampling, and pinned items
// at fixed positions. It is pure: the caller supplies the candidates and the
// lookups (vectors, attributes, exposure), and a random source.
package rank

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/recserve/recserve/index"
)

// Placements say how an item got its place when not by its score.
const (
	PlacementPinned      = "pinned"
	PlacementExploration = "exploration"
)

// DefaultExplorationThreshold is the number of impressions below which an
// item is under-exposed and may get an exploration slot.
const DefaultExplorationThreshold = 100

// AnyCategory in Boost.Category matches every category; NoCategory matches
// none (a category name the caller does not know).
const (
	AnyCategory int32 = -1
	NoCategory  int32 = -2
)

// Candidate is one retrieved item.
type Candidate struct {
	Row      int32
	Score    float32 // retrieval score
	Category int32
}

// Boost changes the score of matching items: score*Multiply + Add. An item
// matches when its category is Category (AnyCategory: every one) and, when
// Attribute is set, its attribute Attribute equals Value.
type Boost struct {
	Category         int32
	Attribute, Value string
	Multiply, Add    float64
}

// Pin places an item at a position (0 is the first). Item is its candidate
// (score and category); a pinned item that is also among the candidates
// appears once, at its pinned position.
type Pin struct {
	Item     Candidate
	Position int
}

// Random is the random source exploration draws from; *rand.Rand is one.
type Random interface {
	Float64() float64
	NormFloat64() float64
}

// Input is what the ranker reads: the candidates and the lookups about them.
// Lookups may be nil when no rule needs them.
type Input struct {
	// Candidates, in retrieval order (any order works: they are sorted by
	// boosted score, ties by lower row).
	Candidates []Candidate
	// Vector returns an item's embedding (diversity).
	Vector func(row int32) []float32
	// Attribute returns an item's attribute value and whether it has it (boosts).
	Attribute func(row int32, name string) (string, bool)
	// Exposure returns how often an item was shown and clicked (exploration).
	Exposure func(row int32) (impressions, clicks int64)
}

// Config is the ranking rules; the zero value keeps retrieval order.
type Config struct {
	// DiversityLambda (0 to 1) weighs maximal marginal relevance: each next
	// item maximizes (1-λ)·score' - λ·(highest cosine similarity to the items
	// already chosen), score' the boosted score scaled to 0..1 over the
	// candidates. 0 is plain order by score.
	DiversityLambda float64
	// MaxPerCategory caps the items of one category (0: no cap). Pinned items
	// do not count against it.
	MaxPerCategory int
	Boosts         []Boost
	Pinned         []Pin
	// ExplorationShare (0 to 0.5) of the n slots go to under-exposed items:
	// ExplorationSlots(share, n) of them.
	ExplorationShare float64
	// ExplorationThreshold: items with fewer impressions are under-exposed
	// (0: DefaultExplorationThreshold).
	ExplorationThreshold int64
	// Rand is the random source for exploration (nil: math/rand/v2's global one).
	Rand Random
}

// Active reports whether c changes anything about retrieval order.
func (c *Config) Active() bool {
	return c.DiversityLambda > 0 || c.MaxPerCategory > 0 || len(c.Boosts) > 0 || len(c.Pinned) > 0 || c.ExplorationShare > 0
}

// Item is one ranked item.
type Item struct {
	Row       int32
	Category  int32
	Retrieval float32 // the retrieval score
	Score     float32 // the final score: the retrieval score with the boosts applied
	Placement string  // "", PlacementPinned or PlacementExploration
}

// ExplorationSlots returns the slots of n given to exploration: share·n
// rounded, and at least one when share > 0 and n >= 2 (a single slot is never
// given away).
func ExplorationSlots(share float64, n int) int {
	if share <= 0 || n < 2 {
		return 0
	}
	return max(1, min(n-1, int(math.Round(share*float64(n)))))
}

// Rank returns up to n items: the boosted candidates chosen by MMR under the
// category cap, then the exploration picks in the last slots that are not
// pinned, with the pinned items at their positions. Fewer than n come back
// when the cap or the candidates leave too few.
func Rank(in Input, n int, cfg Config) []Item {
	if n <= 0 {
		return nil
	}
	pinned := map[int32]bool{}
	pins := make([]Pin, 0, len(cfg.Pinned))
	for _, p := range cfg.Pinned {
		if !pinned[p.Item.Row] {
			pinned[p.Item.Row] = true
			pins = append(pins, p)
		}
	}
	pins = pins[:min(len(pins), n)]
	slices.SortStableFunc(pins, func(a, b Pin) int { return cmp.Compare(a.Position, b.Position) })

	cands := make([]Item, 0, len(in.Candidates))
	for _, c := range in.Candidates {
		if !pinned[c.Row] {
			cands = append(cands, Item{Row: c.Row, Category: c.Category, Retrieval: c.Score, Score: boosted(in, cfg.Boosts, c)})
		}
	}
	slices.SortStableFunc(cands, func(a, b Item) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(a.Row, b.Row)
	})

	free := n - len(pins)
	explore := 0
	if in.Exposure != nil {
		explore = min(ExplorationSlots(cfg.ExplorationShare, n), free)
	}
	p := newPicker(in, cfg, cands)
	main := p.pick(free - explore)
	var explored []Item
	if explore > 0 {
		explored = p.explore(explore, in.Exposure, cfg)
		main = append(main, p.pick(explore-len(explored))...) // too few under-exposed: ranked items instead
	}

	fill := append(main, explored...)
	total := len(fill) + len(pins)
	out := make([]Item, 0, total)
	for i := 0; i < total; i++ {
		if len(pins) > 0 && (pins[0].Position <= i || len(fill) == 0) {
			c := pins[0].Item
			out = append(out, Item{Row: c.Row, Category: c.Category, Retrieval: c.Score, Score: boosted(in, cfg.Boosts, c), Placement: PlacementPinned})
			pins = pins[1:]
			continue
		}
		out = append(out, fill[0])
		fill = fill[1:]
	}
	return out
}

// boosted applies every matching boost, in order, to c's score.
func boosted(in Input, boosts []Boost, c Candidate) float32 {
	score := float64(c.Score)
	for _, b := range boosts {
		if b.Category != AnyCategory && b.Category != c.Category {
			continue
		}
		if b.Attribute != "" {
			if in.Attribute == nil {
				continue
			}
			if v, ok := in.Attribute(c.Row, b.Attribute); !ok || v != b.Value {
				continue
			}
		}
		score = score*b.Multiply + b.Add
	}
	return float32(score)
}

// picker chooses items from the candidates one at a time.
type picker struct {
	cands   []Item // by boosted score, best first
	taken   []bool
	perCat  map[int32]int
	cap     int
	lambda  float64
	vector  func(int32) []float32
	vecs    [][]float32 // candidate vectors, normalized (diversity only)
	maxSim  []float64   // highest similarity to a picked item
	norm    []float64   // boosted score scaled to 0..1
	next    int         // first candidate not taken (no diversity)
	anyPick bool
}

func newPicker(in Input, cfg Config, cands []Item) *picker {
	p := &picker{cands: cands, taken: make([]bool, len(cands)), cap: cfg.MaxPerCategory, lambda: cfg.DiversityLambda}
	if p.cap > 0 {
		p.perCat = map[int32]int{}
	}
	if p.lambda > 0 && in.Vector != nil && len(cands) > 0 {
		p.vecs = make([][]float32, len(cands))
		p.maxSim = make([]float64, len(cands))
		p.norm = make([]float64, len(cands))
		hi, lo := float64(cands[0].Score), float64(cands[len(cands)-1].Score)
		dim := len(in.Vector(cands[0].Row))
		slab := make([]float32, len(cands)*dim) // one allocation for all of them
		for i, c := range cands {
			p.vecs[i] = normalize(slab[i*dim:(i+1)*dim:(i+1)*dim], in.Vector(c.Row))
			if hi > lo {
				p.norm[i] = (float64(c.Score) - lo) / (hi - lo)
			} else {
				p.norm[i] = 1
			}
		}
	}
	return p
}

// normalize writes v scaled to unit length into out (zeros for a zero v)
// and returns out.
func normalize(out, v []float32) []float32 {
	ss := float64(index.Dot(v, v))
	if ss == 0 {
		return out
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// dot is the inner product of two unit vectors, with the index's kernel.
func dot(a, b []float32) float64 { return float64(index.Dot(a, b)) }

func (p *picker) capped(c Item) bool { return p.cap > 0 && p.perCat[c.Category] >= p.cap }

// take marks candidate i picked.
func (p *picker) take(i int) Item {
	p.taken[i] = true
	c := p.cands[i]
	if p.perCat != nil {
		p.perCat[c.Category]++
	}
	if p.vecs != nil {
		for j := range p.cands {
			if !p.taken[j] {
				p.maxSim[j] = max(p.maxSim[j], dot(p.vecs[i], p.vecs[j]))
			}
		}
		p.anyPick = true
	}
	return c
}

// pick chooses up to k more items by MMR (plain score order without
// diversity), skipping capped categories.
func (p *picker) pick(k int) []Item {
	var out []Item
	for len(out) < k {
		best := -1
		if p.vecs == nil {
			for ; p.next < len(p.cands) && p.taken[p.next]; p.next++ {
			}
			for i := p.next; i < len(p.cands); i++ {
				if !p.taken[i] && !p.capped(p.cands[i]) {
					best = i
					break
				}
			}
		} else {
			bestVal := math.Inf(-1)
			for i, c := range p.cands { // ties keep the earlier: higher score, lower row
				if p.taken[i] || p.capped(c) {
					continue
				}
				sim := 0.0
				if p.anyPick {
					sim = p.maxSim[i]
				}
				if v := (1-p.lambda)*p.norm[i] - p.lambda*sim; v > bestVal {
					best, bestVal = i, v
				}
			}
		}
		if best < 0 {
			break
		}
		out = append(out, p.take(best))
	}
	return out
}

// explore chooses up to k items among the candidates not picked, under the
// category cap, that have fewer impressions than the threshold: those with
// the highest draws of θ ~ Beta(1+clicks, 1+impressions-clicks).
func (p *picker) explore(k int, exposure func(int32) (int64, int64), cfg Config) []Item {
	threshold := cfg.ExplorationThreshold
	if threshold <= 0 {
		threshold = DefaultExplorationThreshold
	}
	var rng Random = globalRand{}
	if cfg.Rand != nil {
		rng = cfg.Rand
	}
	type draw struct {
		i     int
		theta float64
	}
	var draws []draw
	for i, c := range p.cands {
		if p.taken[i] {
			continue
		}
		imp, clicks := exposure(c.Row)
		if imp >= threshold {
			continue
		}
		clicks = min(max(clicks, 0), max(imp, 0))
		draws = append(draws, draw{i, betaSample(rng, float64(1+clicks), float64(1+max(imp, 0)-clicks))})
	}
	slices.SortStableFunc(draws, func(a, b draw) int { return cmp.Compare(b.theta, a.theta) })
	var out []Item
	for _, d := range draws {
		if len(out) == k {
			break
		}
		if p.capped(p.cands[d.i]) {
			continue
		}
		it := p.take(d.i)
		it.Placement = PlacementExploration
		out = append(out, it)
	}
	return out
}

type globalRand struct{}

func (globalRand) Float64() float64     { return rand.Float64() }
func (globalRand) NormFloat64() float64 { return rand.NormFloat64() }

// betaSample draws from Beta(a, b), a, b >= 1, as X/(X+Y) of two gamma draws.
func betaSample(r Random, a, b float64) float64 {
	x, y := gammaSample(r, a), gammaSample(r, b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// gammaSample draws from Gamma(shape, 1), shape >= 1 (Marsaglia and Tsang).
func gammaSample(r Random, shape float64) float64 {
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
