package trainer

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// parallelFor calls fn(worker, block) for every block in [0, n) on the given
// number of goroutines and waits for them. Which worker runs a block varies
// between runs, so fn's result for a block must not depend on the worker
// except through scratch space. It stops handing out blocks once ctx is done
// and then returns ctx.Err().
func parallelFor(ctx context.Context, workers, n int, fn func(worker, block int)) error {
	workers = min(workers, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				b := int(next.Add(1)) - 1
				if b >= n {
					return
				}
				fn(w, b)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// gramChunk is the number of rows summed into one partial Gramian. It is a
// constant so that the summation order, and thus the result, does not
// depend on the number of workers.
const gramChunk = 4096

// gramian returns scale·VᵀV for the n×k row-major matrix v as a full
// (both triangles) k×k row-major matrix.
func gramian(ctx context.Context, workers int, v []float64, n, k int, scale float64) ([]float64, error) {
	chunks := (n + gramChunk - 1) / gramChunk
	parts := make([][]float64, chunks)
	err := parallelFor(ctx, workers, chunks, func(_, c int) {
		lo, hi := c*gramChunk, min((c+1)*gramChunk, n)
		p := make([]float64, k*k)
		blas64.Syrk(blas.Trans, 1,
			blas64.General{Rows: hi - lo, Cols: k, Stride: k, Data: v[lo*k : hi*k]},
			0, blas64.Symmetric{Uplo: blas.Upper, N: k, Stride: k, Data: p})
		parts[c] = p
	})
	if err != nil {
		return nil, err
	}
	g := make([]float64, k*k)
	for _, p := range parts {
		floats.Add(g, p)
	}
	for i := range k {
		for j := i; j < k; j++ {
			s := scale * g[i*k+j]
			g[i*k+j], g[j*k+i] = s, s
		}
	}
	return g, nil
}

// solveExact solves the iALS normal equations of one row,
//
//	(gram + λI + Σ_j c_j y_j y_jᵀ) x = Σ_j (a0 + c_j) y_j,
//
// where gram is a0·YᵀY (full k×k) and ys holds the rows y_j (n×k,
// overwritten). a is k×k scratch. It writes x and reports whether the
// matrix was positive definite.
func solveExact(x, gram []float64, k int, lambda, a0 float64, ys, c, a []float64) bool {
	n := len(c)
	clear(x)
	for j := range n {
		floats.AddScaled(x, a0+c[j], ys[j*k:(j+1)*k])
		floats.Scale(math.Sqrt(c[j]), ys[j*k:(j+1)*k])
	}
	copy(a, gram)
	for i := range k {
		a[i*k+i] += lambda
	}
	sym := blas64.Symmetric{Uplo: blas.Upper, N: k, Stride: k, Data: a}
	if n > 0 {
		blas64.Syrk(blas.Trans, 1, blas64.General{Rows: n, Cols: k, Stride: k, Data: ys[:n*k]}, 1, sym)
	}
	t, ok := lapack64.Potrf(sym)
	if !ok {
		return false
	}
	lapack64.Potrs(t, blas64.General{Rows: k, Cols: 1, Stride: 1, Data: x})
	return true
}

// side is one half of the alternating problem: the rows being solved for,
// their observed entries in the other side, and their regularization.
type side struct {
	rows   int
	ptr    []int     // CSR row pointers, len rows+1
	idx    []int32   // column (other-side row) of each entry
	conf   []float64 // Alpha·weight of each entry
	lambda []float64 // per-row regularization
}

// blockRows is the number of rows updated together by one batched
// conjugate-gradient solve; the α0·YᵀY products of a block are one matrix
// multiplication. Fixed so results do not depend on the number of workers.
const blockRows = 64

// solver holds the per-worker scratch space of a half sweep.
type solver struct {
	k        int
	ys, a    []float64 // exact path
	r, p, ap []float64 // CG path, blockRows×k each
	rs, tol  []float64
	done     []bool
}

func newSolver(k int) *solver {
	return &solver{
		k:    k,
		a:    make([]float64, k*k),
		r:    make([]float64, blockRows*k),
		p:    make([]float64, blockRows*k),
		ap:   make([]float64, blockRows*k),
		rs:   make([]float64, blockRows),
		tol:  make([]float64, blockRows),
		done: make([]bool, blockRows),
	}
}

// sweep recomputes every row of dst (s.rows×k) from the fixed factors src
// (m×k) whose scaled Gramian is gram.
func sweep(ctx context.Context, opts Options, s *side, dst, src, gram []float64, solvers []*solver) error {
	k := opts.Factors
	blocks := (s.rows + blockRows - 1) / blockRows
	var failed atomic.Bool
	err := parallelFor(ctx, len(solvers), blocks, func(w, b int) {
		lo, hi := b*blockRows, min((b+1)*blockRows, s.rows)
		sv := solvers[w]
		if opts.CGSteps == 0 {
			for r := lo; r < hi; r++ {
				if !sv.exactRow(opts, s, r, dst[r*k:(r+1)*k], src, gram) {
					failed.Store(true)
				}
			}
			return
		}
		sv.cgBlock(opts, s, lo, hi, dst, src, gram)
	})
	if err != nil {
		return err
	}
	if failed.Load() {
		return errNotPositiveDefinite
	}
	return nil
}

func (sv *solver) exactRow(opts Options, s *side, r int, x, src, gram []float64) bool {
	k := sv.k
	lo, hi := s.ptr[r], s.ptr[r+1]
	n := hi - lo
	if n == 0 {
		clear(x)
		return true
	}
	if cap(sv.ys) < n*k {
		sv.ys = make([]float64, n*k)
	}
	ys := sv.ys[:n*k]
	for j, col := range s.idx[lo:hi] {
		copy(ys[j*k:(j+1)*k], src[int(col)*k:(int(col)+1)*k])
	}
	return solveExact(x, gram, k, s.lambda[r], opts.Unobserved, ys, s.conf[lo:hi], sv.a)
}

// applySparse adds λ·v + Σ_j c_j y_j (y_j·v) to out for row r.
func applySparse(s *side, r int, k int, src, v, out []float64) {
	floats.AddScaled(out, s.lambda[r], v)
	for e := s.ptr[r]; e < s.ptr[r+1]; e++ {
		c := s.conf[e]
		if c == 0 {
			continue
		}
		y := src[int(s.idx[e])*k : (int(s.idx[e])+1)*k]
		floats.AddScaled(out, c*floats.Dot(y, v), y)
	}
}

// cgBlock runs opts.CGSteps conjugate-gradient steps for rows [lo, hi),
// warm-started from their current values in dst. Each row's system is
// independent; the rows are batched only to share one matrix
// multiplication by the Gramian per step.
func (sv *solver) cgBlock(opts Options, s *side, lo, hi int, dst, src, gram []float64) {
	k, n := sv.k, hi-lo
	a0 := opts.Unobserved
	x := blas64.General{Rows: n, Cols: k, Stride: k, Data: dst[lo*k : hi*k]}
	pm := blas64.General{Rows: n, Cols: k, Stride: k, Data: sv.p[:n*k]}
	apm := blas64.General{Rows: n, Cols: k, Stride: k, Data: sv.ap[:n*k]}
	g := blas64.General{Rows: k, Cols: k, Stride: k, Data: gram}

	// r = b − A·x, with A·x = x·G (G symmetric) plus the sparse part.
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, x, g, 0, apm)
	for i := range n {
		r := lo + i
		ri := sv.r[i*k : (i+1)*k]
		clear(ri)
		for e := s.ptr[r]; e < s.ptr[r+1]; e++ {
			floats.AddScaled(ri, a0+s.conf[e], src[int(s.idx[e])*k:(int(s.idx[e])+1)*k])
		}
		bb := floats.Dot(ri, ri)
		xi := x.Data[i*k : (i+1)*k]
		if s.ptr[r] == s.ptr[r+1] || bb == 0 {
			clear(xi) // b = 0 and A is positive definite, so x = 0.
			sv.done[i] = true
			continue
		}
		api := sv.ap[i*k : (i+1)*k]
		applySparse(s, r, k, src, xi, api)
		floats.Sub(ri, api)
		copy(sv.p[i*k:(i+1)*k], ri)
		sv.rs[i] = floats.Dot(ri, ri)
		sv.tol[i] = 1e-20 * bb
		sv.done[i] = sv.rs[i] <= sv.tol[i]
	}
	for range opts.CGSteps {
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, pm, g, 0, apm)
		active := false
		for i := range n {
			if sv.done[i] {
				continue
			}
			r := lo + i
			pi, api := sv.p[i*k:(i+1)*k], sv.ap[i*k:(i+1)*k]
			ri, xi := sv.r[i*k:(i+1)*k], x.Data[i*k:(i+1)*k]
			applySparse(s, r, k, src, pi, api)
			alpha := sv.rs[i] / floats.Dot(pi, api)
			floats.AddScaled(xi, alpha, pi)
			floats.AddScaled(ri, -alpha, api)
			rsNew := floats.Dot(ri, ri)
			if rsNew <= sv.tol[i] {
				sv.done[i] = true
				continue
			}
			// p = r + (rsNew/rs)·p
			floats.Scale(rsNew/sv.rs[i], pi)
			floats.Add(pi, ri)
			sv.rs[i] = rsNew
			active = true
		}
		if !active {
			break
		}
	}
}
