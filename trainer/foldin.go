package trainer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// Folder computes user vectors for users the model was not trained on (or
// whose interactions changed) with the exact iALS user update against fixed
// item vectors. Building it computes the item Gramian α0·YᵀY and its
// eigendecomposition Q·diag(e)·Qᵀ once (O(|items|·Dim² + Dim³)). A user
// with n items then costs O(n·Dim² + n²·Dim + n³) through the Woodbury
// identity in the eigenbasis, where (α0·YᵀY + λI)⁻¹ is diagonal, or
// O(n·Dim² + Dim³) through a Cholesky factorization when n ≥ Dim/2. A
// Folder is safe for concurrent use.
type Folder struct {
	dim     int
	nItems  int
	items   []float32
	gram    []float64 // α0·YᵀY, full dim×dim
	eig     []float64 // eigenvalues of gram, clamped at 0
	q       []float64 // eigenvectors of gram: column j belongs to eig[j]
	qPacked []float64 // Qᵀ packed for mulGram, which then multiplies by Q
	opts    Options
	pool    sync.Pool // *foldScratch
}

type foldScratch struct {
	ys, yt, c, a, x []float64
	bt, z, dinv, xt []float64
	tmp             []float64
	m, w            []float64
	pairs           []foldPair
	sv              *solver
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
	gram, _ := gramian(context.Background(), opts.workers(), itemVectors, n, dim, opts.Unobserved)
	f := &Folder{dim: dim, nItems: n, items: itemVectors, gram: gram, opts: opts}
	var es mat.EigenSym
	if es.Factorize(mat.NewSymDense(dim, slices.Clone(gram)), true) {
		f.eig = es.Values(nil)
		for j, e := range f.eig {
			f.eig[j] = max(e, 0)
		}
		var q mat.Dense
		es.VectorsTo(&q)
		f.q = q.RawMatrix().Data
		var qt mat.Dense
		qt.CloneFrom(q.T())
		f.qPacked = packGram(qt.RawMatrix().Data, dim)
	}
	f.pool.New = func() any {
		return &foldScratch{
			a: make([]float64, dim*dim), x: make([]float64, dim),
			bt: make([]float64, dim), z: make([]float64, dim), dinv: make([]float64, dim), xt: make([]float64, dim),
			tmp: make([]float64, dim),
			sv:  newSolver(dim),
		}
	}
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
	if 2*m < k && f.q != nil {
		if !f.woodbury(sc, m, lambda) {
			return out
		}
	} else if !solveExact(sc.x, f.gram, k, lambda, f.opts.Unobserved, sc.ys, sc.c, sc.a) {
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

// woodbury solves the user system for the m gathered rows sc.ys with
// confidences sc.c into sc.x. With G = α0·YᵀY = Q·diag(e)·Qᵀ, D = diag(e)
// + λI and U = C^½·Y_S·Q, the system in the eigenbasis is
// (D + UᵀU)·x̃ = b̃ with b̃ = Qᵀ·Y_Sᵀ·(α0 + c), and
//
//	(D + UᵀU)⁻¹ = D⁻¹ − D⁻¹Uᵀ(I + U·D⁻¹·Uᵀ)⁻¹·U·D⁻¹,
//
// which needs only an m×m factorization; x = Q·x̃.
func (f *Folder) woodbury(sc *foldScratch, m int, lambda float64) bool {
	k := f.dim
	a0 := f.opts.Unobserved
	sc.yt = slices.Grow(sc.yt[:0], m*k)[:m*k]
	for lo := 0; lo < m; lo += blockRows {
		n := min(blockRows, m-lo)
		sc.sv.mulGram(sc.yt[lo*k:(lo+n)*k], sc.ys[lo*k:(lo+n)*k], n, f.qPacked)
	}
	for j := range k {
		sc.dinv[j] = 1 / (f.eig[j] + lambda)
	}
	clear(sc.bt)
	for i := range m {
		row := sc.yt[i*k : (i+1)*k]
		floats.AddScaled(sc.bt, a0+sc.c[i], row)
		floats.Scale(math.Sqrt(sc.c[i]), row) // row becomes u_i
	}
	floats.MulTo(sc.z, sc.dinv, sc.bt)
	// M = I + U·D⁻¹·Uᵀ (upper triangle) and w = U·z.
	sc.m = slices.Grow(sc.m[:0], m*m)[:m*m]
	sc.w = slices.Grow(sc.w[:0], m)[:m]
	for i := range m {
		ui := sc.yt[i*k : (i+1)*k]
		floats.MulTo(sc.tmp, ui, sc.dinv)
		for l := i; l < m; l++ {
			sc.m[i*m+l] = floats.Dot(sc.tmp, sc.yt[l*k:(l+1)*k])
		}
		sc.m[i*m+i]++
		sc.w[i] = floats.Dot(ui, sc.z)
	}
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Upper, N: m, Stride: m, Data: sc.m})
	if !ok {
		return false
	}
	lapack64.Potrs(t, blas64.General{Rows: m, Cols: 1, Stride: 1, Data: sc.w})
	// x̃ = z − D⁻¹·Uᵀ·v, then x = Q·x̃.
	clear(sc.xt)
	for i := range m {
		floats.AddScaled(sc.xt, sc.w[i], sc.yt[i*k:(i+1)*k])
	}
	floats.Mul(sc.xt, sc.dinv)
	floats.SubTo(sc.xt, sc.z, sc.xt)
	blas64.Gemv(blas.NoTrans, 1, blas64.General{Rows: k, Cols: k, Stride: k, Data: f.q},
		blas64.Vector{N: k, Inc: 1, Data: sc.xt}, 0, blas64.Vector{N: k, Inc: 1, Data: sc.x})
	return true
}
