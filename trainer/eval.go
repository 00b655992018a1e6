package trainer

import (
	"context"
	"math"
	"runtime"
	"slices"

	"github.com/recserve/recserve/internal/parallel"
)

// Metrics are ranking metrics averaged over the evaluated users.
type Metrics struct {
	RecallAtK float64 `json:"recall"`
	NDCGAtK   float64 `json:"ndcg"`
	K         int     `json:"k"`
	Users     int     `json:"users"`
}

// evalUsers users are scored at a time, against chunks of items whose
// packed vectors take about evalChunkBytes (to stay in a core's L2 cache).
const (
	evalUsers      = 64
	evalChunkBytes = 192 << 10
)

// Evaluate ranks all items for every user with at least one item in test
// and averages recall@k and NDCG@k over those users, following the
// protocol of the LightGCN Gowalla benchmark:
//
//   - every item of the model is scored by inner product, the user's items
//     in train are excluded (scored −∞), and the k best remain, ties broken
//     by lower item row;
//   - recall = hits / |test items of the user| (the denominator is not
//     capped at k);
//   - NDCG = DCG / IDCG with binary relevance, DCG = Σ_{rank i ≤ k} hit_i /
//     log2(i+1) and IDCG = Σ_{i ≤ min(k, |test items|)} 1 / log2(i+1).
//
// train and test must share rows (see NewHeldOut). Test items without a
// model vector count in the denominators but are never hit; users without
// a model vector are evaluated with no hits. Users are scored in parallel
// on GOMAXPROCS goroutines; the result does not depend on their number.
func Evaluate(m *Model, train, test *Dataset, k int) Metrics {
	return evaluate(m, train, test, k, evalChunkBytes)
}

func evaluate(m *Model, train, test *Dataset, k, chunkBytes int) Metrics {
	var users []int
	for u := range test.NumUsers() {
		if len(test.UserItems(u)) > 0 {
			users = append(users, u)
		}
	}
	out := Metrics{K: k, Users: len(users)}
	if len(users) == 0 || k <= 0 {
		return out
	}
	recall := make([]float64, len(users))
	ndcg := make([]float64, len(users))
	workers := runtime.GOMAXPROCS(0)
	r := newRanking(m, chunkBytes)
	scratch := make([]*evalScratch, workers)
	for w := range scratch {
		scratch[w] = newEvalScratch(r, k)
	}
	blocks := (len(users) + evalUsers - 1) / evalUsers
	_ = parallel.For(context.Background(), workers, blocks, func(w, b int) {
		lo, hi := b*evalUsers, min((b+1)*evalUsers, len(users))
		scratch[w].block(m, r, train, test, users[lo:hi], recall[lo:hi], ndcg[lo:hi])
	})
	for i := range users {
		out.RecallAtK += recall[i]
		out.NDCGAtK += ndcg[i]
	}
	out.RecallAtK /= float64(len(users))
	out.NDCGAtK /= float64(len(users))
	return out
}

type scored struct {
	s    float32
	item int32
}

// worse reports whether a ranks below b.
func worse(a, b scored) bool { return a.s < b.s || (a.s == b.s && a.item > b.item) }

// topK keeps the k best scored items in a min-heap ordered by worse.
type topK struct {
	k int
	h []scored
}

func (t *topK) push(c scored) {
	if len(t.h) < t.k {
		t.h = append(t.h, c)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !worse(t.h[i], t.h[p]) {
				break
			}
			t.h[i], t.h[p] = t.h[p], t.h[i]
			i = p
		}
		return
	}
	if !worse(t.h[0], c) {
		return
	}
	t.h[0] = c
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.h) && worse(t.h[l], t.h[m]) {
			m = l
		}
		if r < len(t.h) && worse(t.h[r], t.h[m]) {
			m = r
		}
		if m == i {
			break
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}

// ranked returns the kept items best first.
func (t *topK) ranked() []scored {
	slices.SortFunc(t.h, func(a, b scored) int {
		switch {
		case worse(b, a):
			return -1
		case worse(a, b):
			return 1
		}
		return 0
	})
	return t.h
}

// ranking is the item side of an evaluation: item vectors reordered by
// decreasing norm and packed for score4x3, so that a user's remaining
// items can be bounded by Cauchy–Schwarz and skipped once none of them can
// enter the top k.
type ranking struct {
	dim   int
	perm  []int32   // position → item row
	pos   []int32   // item row → position
	vecs  []float32 // item vectors in position order, packed in triples
	norms []float64 // ‖item at position p‖, non-increasing
	chunk int       // items per chunk, a multiple of 3
	slack float64   // relative bound on the float32 rounding of a score
}

func newRanking(m *Model, chunkBytes int) *ranking {
	dim, n := m.Dim, m.NumItems()
	kp := padded[float32](dim)
	r := &ranking{
		dim:   dim,
		perm:  make([]int32, n),
		pos:   make([]int32, n),
		norms: make([]float64, n),
		chunk: max(3, chunkBytes/(4*kp)/3*3),
		slack: 1 + 4*float64(dim+2)*0x1p-24,
	}
	norm := make([]float64, n)
	for i := range n {
		norm[i] = math.Sqrt(sumSquares(m.Item(i)))
		r.perm[i] = int32(i)
	}
	slices.SortStableFunc(r.perm, func(a, b int32) int {
		switch {
		case norm[a] > norm[b]:
			return -1
		case norm[a] < norm[b]:
			return 1
		}
		return 0
	})
	sorted := make([]float32, n*dim)
	for p, i := range r.perm {
		r.pos[i] = int32(p)
		r.norms[p] = norm[i]
		copy(sorted[p*dim:(p+1)*dim], m.Item(int(i)))
	}
	r.vecs = make([]float32, (n+2)/3*3*kp)
	packTriples(r.vecs, sorted, n, dim)
	return r
}

func sumSquares(v []float32) float64 {
	var s float64
	for _, f := range v {
		s += float64(f) * float64(f)
	}
	return s
}

type evalScratch struct {
	x      []float32 // packed quads of the active users' vectors
	scores []float32 // rows of the active users, stride chunk
	heaps  []topK
	seen   [][]int32 // per user: positions of train items, sorted
	cursor []int
	bound  []float64 // per user: ‖x‖ times the rounding slack
	active []int     // indices into the block of users still ranking
	rows   [][]float32
}

func newEvalScratch(r *ranking, k int) *evalScratch {
	kp := padded[float32](r.dim)
	quads := (evalUsers + 3) / 4
	s := &evalScratch{
		x:      make([]float32, quads*4*kp),
		scores: make([]float32, quads*4*r.chunk),
		heaps:  make([]topK, evalUsers),
		seen:   make([][]int32, evalUsers),
		cursor: make([]int, evalUsers),
		bound:  make([]float64, evalUsers),
	}
	for i := range s.heaps {
		s.heaps[i] = topK{k: k, h: make([]scored, 0, k)}
	}
	return s
}

// pack packs the vectors of the active users into quads.
func (s *evalScratch) pack(m *Model, users []int) {
	kp := padded[float32](m.Dim)
	for q := 0; q < len(s.active); q += 4 {
		s.rows = s.rows[:0]
		for _, j := range s.active[q:min(q+4, len(s.active))] {
			s.rows = append(s.rows, m.User(users[j]))
		}
		packQuad(s.x[q*kp:(q+4)*kp], s.rows, m.Dim)
	}
}

// block evaluates users (at most evalUsers of them) and writes their
// metrics to recall and ndcg.
func (s *evalScratch) block(m *Model, r *ranking, train, test *Dataset, users []int, recall, ndcg []float64) {
	nItems := m.NumItems()
	kp := padded[float32](m.Dim)
	steps := kp / lanesOf[float32]()
	s.active = s.active[:0]
	for j, u := range users {
		s.heaps[j].h = s.heaps[j].h[:0]
		s.cursor[j] = 0
		s.seen[j] = s.seen[j][:0]
		if u >= m.NumUsers() {
			continue // no vector: no hits
		}
		for _, it := range train.UserItems(u) {
			if int(it) < nItems {
				s.seen[j] = append(s.seen[j], r.pos[it])
			}
		}
		slices.Sort(s.seen[j])
		s.bound[j] = math.Sqrt(sumSquares(m.User(u))) * r.slack
		s.active = append(s.active, j)
	}
	s.pack(m, users)
	for lo := 0; lo < nItems && len(s.active) > 0; lo += r.chunk {
		hi := min(lo+r.chunk, nItems)
		c := hi - lo
		triples := (c + 2) / 3
		for q := 0; q < len(s.active); q += 4 {
			score4x3(s.x[q*kp:(q+4)*kp], r.vecs[lo*kp:], steps, triples, s.scores[q*r.chunk:], r.chunk)
		}
		keep := s.active[:0]
		for a, j := range s.active {
			seen := s.seen[j]
			cur := s.cursor[j]
			h := &s.heaps[j]
			for i, sc := range s.scores[a*r.chunk : a*r.chunk+c] {
				if len(h.h) == h.k && sc < h.h[0].s {
					continue
				}
				p := int32(lo + i)
				for cur < len(seen) && seen[cur] < p {
					cur++
				}
				if cur < len(seen) && seen[cur] == p {
					continue
				}
				if sc != sc { // NaN ranks last, like −∞
					continue
				}
				h.push(scored{sc, r.perm[p]})
			}
			s.cursor[j] = cur
			// Every later item scores at most ‖x‖·‖y_hi‖ (up to rounding).
			if hi < nItems && len(h.h) == h.k && s.bound[j]*r.norms[hi] < float64(h.h[0].s) {
				continue
			}
			keep = append(keep, j)
		}
		if len(keep) < len(s.active) {
			s.active = keep
			s.pack(m, users)
		}
	}
	for j, u := range users {
		truth := test.UserItems(u)
		if u >= m.NumUsers() {
			recall[j], ndcg[j] = 0, 0
			continue
		}
		var hits int
		var dcg float64
		for rank, c := range s.heaps[j].ranked() {
			if _, ok := slices.BinarySearch(truth, c.item); ok {
				hits++
				dcg += 1 / math.Log2(float64(rank)+2)
			}
		}
		var idcg float64
		for i := range min(s.heaps[j].k, len(truth)) {
			idcg += 1 / math.Log2(float64(i)+2)
		}
		recall[j] = float64(hits) / float64(len(truth))
		ndcg[j] = dcg / idcg
	}
}
