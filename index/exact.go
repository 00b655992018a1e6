package index

// Exact is brute-force top-K retrieval: every allowed row is scored.
type Exact struct {
	vecs []float32
	dim  int
	n    int
}

// NewExact returns a brute-force index over vectors (row-major, retained
// without copying). It panics if dim <= 0 or len(vectors) is not a multiple
// of dim; use Build to get an error instead.
func NewExact(vectors []float32, dim int) *Exact {
	n, err := checkShape(vectors, dim)
	if err != nil {
		panic(err)
	}
	return &Exact{vecs: vectors, dim: dim, n: n}
}

// Len returns the number of rows.
func (e *Exact) Len() int { return e.n }

// Dim returns the vector dimension.
func (e *Exact) Dim() int { return e.dim }

// Search implements Index. It allocates only the result slice.
func (e *Exact) Search(q []float32, k int, f Filter) []Result {
	if k <= 0 || len(q) != e.dim || e.n == 0 {
		return nil
	}
	return scan(e.vecs, e.dim, q, k, f)
}

// scan scores every row of vecs allowed by f and returns the best k, best
// first. The filter is applied before scoring.
func scan(vecs []float32, dim int, q []float32, k int, f Filter) []Result {
	n := len(vecs) / dim
	h := make(resultHeap, 0, min(k, n))
	for id := range n {
		if f != nil && !f(int32(id)) {
			continue
		}
		off := id * dim
		h.offer(Result{ID: int32(id), Score: Dot(q, vecs[off:off+dim:off+dim])})
	}
	h.sortBestFirst()
	return h
}
