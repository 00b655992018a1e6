package trainer

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Folder computes user vectors for users the model was not trained on (or
// whose interactions changed) with the exact iALS user update against fixed
// item vectors. Building it computes the item Gramian once, so each FoldIn
// costs O(n·Dim² + Dim³) for n items. A Folder is safe for concurrent use.
type Folder struct {
	dim    int
	nItems int
	items  []float32
	gram   []float64 // Unobserved·YᵀY, full dim×dim
	opts   Options
	pool   sync.Pool // *foldScratch
}

type foldScratch struct {
	ys, c, a, x []float64
	pairs       []foldPair
}

type foldPair struct {
	item int32
	w    float32
}

// NewFolder prepares fold-in against itemVectors (row-major, dim values
// per item), which the Folder keeps and the caller must not modify. Only
// Reg, Alpha, Unobserved and RegExponent of opts are used. It panics if dim
// does not divide len(itemVectors) or opts are invalid, since both are
// programming errors.
func NewFolder(itemVectors []float32, dim int, opts Options) *Folder {
	if dim <= 0 || len(itemVectors)%dim != 0 {
		panic(fmt.Sprintf("trainer: %d item values do not form rows of dim %d", len(itemVectors), dim))
	}
	opts.Factors = dim
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	n := len(itemVectors) / dim
	// One goroutine: a Folder is typically built while serving.
	gram, _ := gramian(context.Background(), 1, toFloat64(itemVectors), n, dim, opts.Unobserved)
	f := &Folder{dim: dim, nItems: n, items: itemVectors, gram: gram, opts: opts}
	f.pool.New = func() any { return &foldScratch{a: make([]float64, dim*dim), x: make([]float64, dim)} }
	return f
}

// FoldIn returns the user vector that minimises the iALS objective for a
// user with the given item rows and event weights (nil weights mean 1 each;
// otherwise len(weights) must equal len(items)). Repeated items have their
// weights summed, as in a Dataset; items outside the model are ignored. A
// user without items gets the zero vector.
func (f *Folder) FoldIn(items []int32, weights []float32) []float32 {
	if weights != nil && len(weights) != len(items) {
		panic(fmt.Sprintf("trainer: FoldIn got %d weights for %d items", len(weights), len(items)))
	}
	k := f.dim
	sc := f.pool.Get().(*foldScratch)
	defer f.pool.Put(sc)
	pairs := sc.pairs[:0]
	for j, it := range items {
		if it < 0 || int(it) >= f.nItems {
			continue
		}
		w := float32(1)
		if weights != nil {
			w = weights[j]
		}
		pairs = append(pairs, foldPair{it, w})
	}
	slices.SortFunc(pairs, func(a, b foldPair) int { return int(a.item) - int(b.item) })
	// Merge repeats.
	m := 0
	for _, p := range pairs {
		if m > 0 && pairs[m-1].item == p.item {
			pairs[m-1].w += p.w
			continue
		}
		pairs[m] = p
		m++
	}
	pairs = pairs[:m]
	sc.pairs = pairs
	out := make([]float32, k)
	if m == 0 {
		return out
	}
	sc.ys = slices.Grow(sc.ys[:0], m*k)[:m*k]
	sc.c = slices.Grow(sc.c[:0], m)[:m]
	for j, p := range pairs {
		row := f.items[int(p.item)*k : (int(p.item)+1)*k]
		dst := sc.ys[j*k : (j+1)*k]
		for d, v := range row {
			dst[d] = float64(v)
		}
		sc.c[j] = max(0, f.opts.Alpha*float64(p.w)) // negative weights count as 0
	}
	lambda := f.opts.lambda(m, f.nItems)
	if !solveExact(sc.x, f.gram, k, lambda, f.opts.Unobserved, sc.ys, sc.c, sc.a) {
		// Not reachable for valid options (Reg > 0 makes the system
		// positive definite) unless the vectors hold NaN or Inf.
		return out
	}
	for d, v := range sc.x {
		out[d] = float32(v)
	}
	return out
}

// FoldIn is NewFolder(itemVectors, dim, opts).FoldIn(items, weights). It
// recomputes the item Gramian on every call; build a Folder once per model
// to serve many requests.
func FoldIn(itemVectors []float32, dim int, items []int32, weights []float32, opts Options) []float32 {
	return NewFolder(itemVectors, dim, opts).FoldIn(items, weights)
}
