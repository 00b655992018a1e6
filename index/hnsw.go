package index

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/recserve/recserve/internal/hugepage"
)

// maxLevel caps the random level draw.
const maxLevel = 64

// HNSW is a Hierarchical Navigable Small World graph (Malkov and Yashunin,
// 2018) over negative inner product, the distance of hnswlib's "ip" space.
//
// Layer 0 keeps up to 2*M links per node in one flat array; the few nodes
// on upper layers keep M links per layer in a second flat array. Each link
// list is a count followed by the IDs. Searches walk the graph with 8-bit
// codes of the vectors (see codes). The graph is immutable after NewHNSW
// returns.
type HNSW struct {
	vecs     []float32 // retained, row-major
	dim      int
	n        int
	m, m0    int // links per node on upper layers and on layer 0
	efSearch int

	levels   []uint8 // top layer of each node
	links0   []int32 // n blocks of m0+1: count, then IDs
	upperOff []int32 // start of a node's blocks in upper, or -1
	upper    []int32 // per node, levels[id] blocks of m+1

	entry    int32 // entry point: a node on the top layer
	topLevel int

	codes codes // 8-bit vectors for the search walk

	pool sync.Pool // *scratch
}

// scratch is per-search working memory, reused through HNSW.pool.
type scratch struct {
	visited visitSet // nodes this search has reached
	near    nearHeap
	far     farHeap
	ids     []int32   // unvisited neighbours of the expanded node
	dists   []float32 // their distances from the query
	q16     []int16   // the query scaled for the codes
	qf      float32   // turns a code dot product into an inner product
	sums    []int32   // code dot products

	// build only
	links      []int32
	sorted     []candidate // insert: candidates in ascending distance
	picked     []candidate // insert: selected neighbours
	pruneCands []candidate // link: a full list plus the new edge
	prunePick  []candidate // link: the pruned list
}

// reset starts a new search.
func (s *scratch) reset() {
	s.visited.reset()
	s.near = s.near[:0]
	s.far = s.far[:0]
}

// NewHNSW builds an HNSW graph over vectors (row-major, retained without
// copying) with opts.Workers goroutines; opts.Kind is ignored. Node levels
// are drawn from opts.Seed before the parallel build, so the layer
// structure is reproducible and with Workers = 1 the whole graph is.
func NewHNSW(vectors []float32, dim int, opts Options) (*HNSW, error) {
	n, err := checkShape(vectors, dim)
	if err != nil {
		return nil, err
	}
	opts.Kind = KindHNSW
	if opts, err = opts.withDefaults(); err != nil {
		return nil, err
	}
	h := &HNSW{
		vecs:     vectors,
		dim:      dim,
		n:        n,
		m:        opts.M,
		m0:       2 * opts.M,
		efSearch: opts.EfSearch,
	}
	if n == 0 {
		return h, nil
	}
	if err := h.allocate(opts.Seed); err != nil {
		return nil, err
	}
	h.build(opts)
	h.codes = quantize(vectors, dim)
	return h, nil
}

// allocate draws every node's level (Ml = 1/ln(M)) and sizes the link arrays.
func (h *HNSW) allocate(seed int64) error {
	rng := rand.New(rand.NewSource(seed))
	ml := 1 / math.Log(float64(h.m))
	h.levels = make([]uint8, h.n)
	h.upperOff = make([]int32, h.n)
	total := 0
	for i := range h.n {
		l := int(-math.Log(1-rng.Float64()) * ml)
		l = min(l, maxLevel)
		h.levels[i] = uint8(l)
		h.upperOff[i] = -1
		if l > 0 {
			if total > math.MaxInt32 {
				return fmt.Errorf("%w: upper layers overflow", ErrTooManyRows)
			}
			h.upperOff[i] = int32(total)
			total += l * (h.m + 1)
		}
	}
	if total > math.MaxInt32 || int64(h.n)*int64(h.m0+1) > math.MaxInt {
		return fmt.Errorf("%w: link arrays overflow", ErrTooManyRows)
	}
	h.links0 = hugepage.Make[int32](h.n * (h.m0 + 1)) // searches read it at random (see hugepage)
	h.upper = make([]int32, total)
	return nil
}

// Len returns the number of rows.
func (h *HNSW) Len() int { return h.n }

// WithEfSearch returns an index sharing h's graph and vectors that searches
// with candidate list size ef (a search uses max(ef, k)); ef <= 0 selects
// DefaultEfSearch. h is unchanged.
func (h *HNSW) WithEfSearch(ef int) *HNSW {
	if ef <= 0 {
		ef = DefaultEfSearch
	}
	c := &HNSW{vecs: h.vecs, dim: h.dim, n: h.n, m: h.m, m0: h.m0, efSearch: ef,
		levels: h.levels, links0: h.links0, upperOff: h.upperOff, upper: h.upper,
		entry: h.entry, topLevel: h.topLevel, codes: h.codes}
	return c
}

// Dim returns the vector dimension.
func (h *HNSW) Dim() int { return h.dim }

// vec returns row id.
func (h *HNSW) vec(id int32) []float32 {
	off := int(id) * h.dim
	return h.vecs[off : off+h.dim : off+h.dim]
}

// block returns the link block (count, then capacity IDs) of id on level.
func (h *HNSW) block(id int32, level int) []int32 {
	if level == 0 {
		off := int(id) * (h.m0 + 1)
		return h.links0[off : off+h.m0+1 : off+h.m0+1]
	}
	off := int(h.upperOff[id]) + (level-1)*(h.m+1)
	return h.upper[off : off+h.m+1 : off+h.m+1]
}

// neighbors returns the links of id on level (no locking).
func (h *HNSW) neighbors(id int32, level int) []int32 {
	b := h.block(id, level)
	return b[1 : 1+b[0]]
}

// maxLinks is the link capacity on level.
func (h *HNSW) maxLinks(level int) int {
	if level == 0 {
		return h.m0
	}
	return h.m
}

// builder holds build-only state: per-node locks guarding link lists, and a
// global lock guarding the entry point.
type builder struct {
	h      *HNSW
	efC    int
	locks  []sync.Mutex
	global sync.Mutex
}

// build inserts node 0 as the entry point and the rest with opts.Workers
// goroutines. Readers lock a node only while copying its links, and no
// goroutine ever holds two node locks, so the build cannot deadlock.
func (h *HNSW) build(opts Options) {
	b := &builder{h: h, efC: opts.EfConstruction, locks: make([]sync.Mutex, h.n)}
	h.entry, h.topLevel = 0, int(h.levels[0])
	var next atomic.Int64
	next.Store(1)
	var wg sync.WaitGroup
	for range max(1, min(opts.Workers, h.n-1)) {
		wg.Go(func() {
			s := new(scratch)
			for {
				id := next.Add(1) - 1
				if id >= int64(h.n) {
					return
				}
				b.insert(s, int32(id))
			}
		})
	}
	wg.Wait()
}

// insert links node x into every layer up to its level.
func (b *builder) insert(s *scratch, x int32) {
	h := b.h
	q := h.vec(x)
	level := int(h.levels[x])

	b.global.Lock()
	ep, top := h.entry, h.topLevel
	owner := level > top // a new top node keeps the global lock until linked
	if !owner {
		b.global.Unlock()
	}

	cur, curDist := ep, -Dot(q, h.vec(ep))
	for l := top; l > level; l-- {
		cur, curDist = h.greedy(q, cur, curDist, l, x, b.locks, s)
	}
	for l := min(level, top); l >= 0; l-- {
		s.reset()
		s.visited.reserve(1)
		s.visited.add(x) // never link x to itself
		h.searchLayer(s, q, cur, curDist, b.efC, l, nil, b.locks)
		// Drain the far heap into ascending order.
		s.sorted = slices.Grow(s.sorted[:0], len(s.far))[:len(s.far)]
		for i := len(s.far) - 1; i >= 0; i-- {
			s.sorted[i] = s.far.pop()
		}
		if len(s.sorted) == 0 {
			continue
		}
		cur, curDist = s.sorted[0].id(), s.sorted[0].dist()
		s.picked = h.selectNeighbors(s.sorted, h.m, s.picked[:0])
		for _, c := range s.picked {
			b.link(s, x, c.id(), c.dist(), l)
		}
		for _, c := range s.picked {
			b.link(s, c.id(), x, c.dist(), l)
		}
	}

	if owner {
		h.entry, h.topLevel = x, level
		b.global.Unlock()
	}
}

// link adds the edge from -> to (at distance d) on level. If from's list is
// full, the list plus the new edge is pruned with the selection heuristic.
func (b *builder) link(s *scratch, from, to int32, d float32, level int) {
	h := b.h
	mu := &b.locks[from]
	mu.Lock()
	defer mu.Unlock()
	blk := h.block(from, level)
	cnt := int(blk[0])
	if slices.Contains(blk[1:1+cnt], to) {
		return
	}
	if cnt < len(blk)-1 {
		blk[1+cnt] = to
		blk[0]++
		return
	}
	ids := blk[1 : 1+cnt]
	s.dists = slices.Grow(s.dists[:0], cnt)[:cnt]
	dots(h.vec(from), h.vecs, h.dim, ids, s.dists) // rows prefetched together
	cands := append(s.pruneCands[:0], newCandidate(d, to))
	for i, id := range ids {
		cands = append(cands, newCandidate(-s.dists[i], id))
	}
	slices.Sort(cands)
	picked := h.selectNeighbors(cands, cnt, s.prunePick[:0])
	for i, c := range picked {
		blk[1+i] = c.id()
	}
	blk[0] = int32(len(picked))
	s.pruneCands, s.prunePick = cands, picked
}

// selectNeighbors is the HNSW neighbour-selection heuristic (hnswlib's
// getNeighborsByHeuristic2): walking cands in ascending distance to the
// base, keep a candidate only if it is closer to the base than to every
// candidate already kept, up to m. Fewer than m candidates are all kept.
func (h *HNSW) selectNeighbors(cands []candidate, m int, out []candidate) []candidate {
	if len(cands) < m {
		return append(out, cands...)
	}
	for _, c := range cands {
		if len(out) >= m {
			break
		}
		v := h.vec(c.id())
		keep := true
		for _, r := range out {
			if -Dot(v, h.vec(r.id())) < c.dist() {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, c)
		}
	}
	return out
}
