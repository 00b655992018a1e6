package index

import (
	"math"
	"math/rand"

	"github.com/coder/hnsw"
)

// coderDistanceName is the name under which the inner-product distance is
// registered with github.com/coder/hnsw, which needs it to Export and
// Import a graph.
const coderDistanceName = "recserve-negative-inner-product"

func init() {
	// The registry is an unlocked map in the dependency; init runs before
	// any goroutine of this program can use it.
	hnsw.RegisterDistanceFunc(coderDistanceName, negDot)
}

// negDot is the inner-product distance: smaller is more similar.
func negDot(a, b []float32) float32 { return -Dot(a, b) }

// Coder wraps github.com/coder/hnsw v0.6.1 (a map-based HNSW without locks
// or filtering) behind Index so it can be compared with HNSW. Its recall on
// clustered data is low; see the acceptance tests.
type Coder struct {
	g        *hnsw.Graph[int32]
	vecs     []float32 // retained, row-major
	dim      int
	n        int
	efSearch int
}

// NewCoder builds a github.com/coder/hnsw graph over vectors (retained
// without copying; the graph's nodes are sub-slices of it) with the
// negative inner product as distance, M = opts.M, Ml = 1/ln(M) and levels
// drawn from opts.Seed. The dependency has no locks, so the graph is built
// sequentially and completely before NewCoder returns; opts.Workers is
// ignored. The dependency uses one ef for building and searching: it is
// opts.EfConstruction while building and opts.EfSearch afterwards.
func NewCoder(vectors []float32, dim int, opts Options) (*Coder, error) {
	n, err := checkShape(vectors, dim)
	if err != nil {
		return nil, err
	}
	opts.Kind = KindCoder
	if opts, err = opts.withDefaults(); err != nil {
		return nil, err
	}
	g := hnsw.NewGraph[int32]()
	g.M = opts.M
	g.Ml = 1 / math.Log(float64(opts.M))
	g.Distance = negDot
	g.Rng = rand.New(rand.NewSource(opts.Seed))
	g.EfSearch = opts.EfConstruction
	for i := range n {
		off := i * dim
		g.Add(hnsw.MakeNode(int32(i), vectors[off:off+dim:off+dim]))
	}
	g.EfSearch = opts.EfSearch
	return &Coder{g: g, vecs: vectors, dim: dim, n: n, efSearch: opts.EfSearch}, nil
}

// Len returns the number of rows.
func (c *Coder) Len() int { return c.n }

// Dim returns the vector dimension.
func (c *Coder) Dim() int { return c.dim }

// Search implements Index. The dependency returns unscored keys, so Search
// over-fetches ef = max(EfSearch, k) of them, divided by the filter's
// estimated allowed fraction, re-scores them exactly and keeps the best k
// allowed. It scans exactly instead where HNSW would (see preferScan), when
// the over-fetch would cover the catalog, and when the graph still yields
// fewer than k allowed items.
func (c *Coder) Search(q []float32, k int, f Filter) []Result {
	if k <= 0 || len(q) != c.dim || c.n == 0 {
		return nil
	}
	k = min(k, c.n)
	ef := max(c.efSearch, k)
	useScan, p := preferScan(f, c.n, ef)
	if useScan || float64(ef)/p >= float64(c.n) {
		return scan(c.vecs, c.dim, q, k, f)
	}
	fetch := int(float64(ef) / p)
	nodes := c.g.Search(q, fetch)
	h := make(resultHeap, 0, k)
	for _, nd := range nodes {
		if f != nil && !f(nd.Key) {
			continue
		}
		h.offer(Result{ID: nd.Key, Score: Dot(q, nd.Value)})
	}
	if len(h) < k {
		return scan(c.vecs, c.dim, q, k, f)
	}
	h.sortBestFirst()
	return h
}
