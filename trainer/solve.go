package trainer

import (
	"context"
	"math"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/lapack/lapack64"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/parallel"
)

// gramChunk is the number of rows summed into one partial Gramian. It is a
// constant so that the summation order, and thus the result, does not
// depend on the number of workers. Within a chunk, gramPanel rows at a
// time are packed column-wise and multiplied with score4x3.
const (
	gramChunk = 4096
	gramPanel = 256
)

// gramian returns scale·VᵀV for the n×k row-major matrix v as a full
// (both triangles) k×k row-major matrix.
func gramian[F float32 | float64](ctx context.Context, workers int, v []F, n, k int, scale float64) ([]float64, error) {
	chunks := (n + gramChunk - 1) / gramChunk
	parts := make([][]float64, chunks)
	err := parallel.For(ctx, workers, chunks, func(_, c int) {
		lo, hi := c*gramChunk, min((c+1)*gramChunk, n)
		parts[c] = gramianChunk(v[lo*k:hi*k], hi-lo, k)
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

// gramianChunk returns VᵀV for the n×k row-major v; only the upper
// triangle is meaningful.
func gramianChunk[F float32 | float64](v []F, n, k int) []float64 {
	rp := padded[float64](gramPanel)
	nq, nt := (k+3)/4, (k+2)/3
	ld := 3 * nt
	quads := make([]float64, nq*4*rp)
	triples := make([]float64, nt*3*rp)
	tmp := make([]float64, nq*4*ld)
	g := make([]float64, k*k)
	for lo := 0; lo < n; lo += gramPanel {
		background.Pace()
		r := min(gramPanel, n-lo)
		panel := v[lo*k : (lo+r)*k]
		packColumns(quads, panel, r, k, 4)
		packColumns(triples, panel, r, k, 3)
		steps := padded[float64](r) / lanesOf[float64]()
		for q := range nq {
			// Only the upper triangle is kept: triples wholly left of the
			// quad's first column (3t+2 < 4q) are not needed.
			t0 := 4 * q / 3
			score4x3(quads[q*4*steps*4:], triples[t0*3*steps*4:], steps, nt-t0, tmp[q*4*ld+3*t0:], ld)
		}
		for a := range k {
			floats.Add(g[a*k+a:(a+1)*k], tmp[a*ld+a:a*ld+k])
		}
	}
	return g
}

// packColumns packs the columns of the r×k row-major panel v as rows of
// length r, in groups of g (3 or 4) columns laid out as packTriples and
// packQuad do (group t starts at t·g·padded(r)), converted to float64 (so a
// float32 matrix is never copied whole); missing columns are zero.
func packColumns[F float32 | float64](dst []float64, v []F, r, k, g int) {
	l, rp := lanesOf[float64](), padded[float64](r)
	groups := (k + g - 1) / g
	clear(dst[:groups*g*rp])
	for d := range r {
		row := v[d*k : (d+1)*k]
		off := (d/l)*g*l + d%l
		for c0 := 0; c0 < k; c0 += g {
			out := dst[c0*rp+off:] // group c0/g starts at (c0/g)·g·rp
			for j, x := range row[c0:min(c0+g, k)] {
				out[j*l] = float64(x)
			}
		}
	}
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
	quads    []float64 // packed rows for mulGram
	prod     []float64 // mulGram output, stride 3·ceil(k/3)
	rows     [][]float64
}

func newSolver(k int) *solver {
	return &solver{
		k:     k,
		a:     make([]float64, k*k),
		r:     make([]float64, blockRows*k),
		p:     make([]float64, blockRows*k),
		ap:    make([]float64, blockRows*k),
		rs:    make([]float64, blockRows),
		tol:   make([]float64, blockRows),
		done:  make([]bool, blockRows),
		quads: make([]float64, blockRows*padded[float64](k)),
		prod:  make([]float64, blockRows*(k+2)/3*3),
	}
}

// packGram packs the symmetric k×k matrix g (row j is column j) for
// mulGram.
func packGram(g []float64, k int) []float64 {
	p := make([]float64, (k+2)/3*3*padded[float64](k))
	packTriples(p, g, k, k)
	return p
}

// mulGramPanel is the size in bytes of the part of the packed Gramian
// that mulGram multiplies all rows of a block with before moving on, so
// that it stays in a core's L2 cache.
const mulGramPanel = 256 << 10

// mulGram sets dst = src·G for the n×k row-major src (n ≤ blockRows), G
// symmetric and packed by packGram.
func (sv *solver) mulGram(dst, src []float64, n int, packed []float64) {
	k := sv.k
	kp := padded[float64](k)
	steps := kp / lanesOf[float64]()
	triples := (k + 2) / 3
	ld := 3 * triples
	for q := 0; q < n; q += 4 {
		sv.rows = sv.rows[:0]
		for i := q; i < min(q+4, n); i++ {
			sv.rows = append(sv.rows, src[i*k:(i+1)*k])
		}
		packQuad(sv.quads[q*kp:(q+4)*kp], sv.rows, k)
	}
	panel := max(1, mulGramPanel/(3*kp*8))
	for t0 := 0; t0 < triples; t0 += panel {
		nt := min(panel, triples-t0)
		for q := 0; q < n; q += 4 {
			score4x3(sv.quads[q*kp:(q+4)*kp], packed[t0*3*kp:], steps, nt, sv.prod[q*ld+3*t0:], ld)
		}
	}
	for i := range n {
		copy(dst[i*k:(i+1)*k], sv.prod[i*ld:i*ld+k])
	}
}

func sweep(ctx context.Context, opts Options, s *side, dst, src, gram []float64, solvers []*solver) error {
	var packed []float64
	if opts.CGSteps > 0 {
		packed = packGram(gram, opts.Factors)
	}
	k := opts.Factors
	blocks := (s.rows + blockRows - 1) / blockRows
	var failed atomic.Bool
	err := parallel.For(ctx, len(solvers), blocks, func(w, b int) {
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
		sv.cgBlock(opts, s, lo, hi, dst, src, packed)
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
		dotAxpy(out, v, y, c)
	}
}

// cgBlock runs opts.CGSteps conjugate-gradient steps for rows [lo, hi),
// warm-started from their current values in dst. Each row's system is
// independent; the rows are batched only to share one matrix
// multiplication by the Gramian per step.
func (sv *solver) cgBlock(opts Options, s *side, lo, hi int, dst, src, packed []float64) {
	k, n := sv.k, hi-lo
	a0 := opts.Unobserved
	x := dst[lo*k : hi*k]

	// r = b − A·x, with A·x = x·G (G symmetric) plus the sparse part.
	sv.mulGram(sv.ap, x, n, packed)
	for i := range n {
		r := lo + i
		ri := sv.r[i*k : (i+1)*k]
		clear(ri)
		for e := s.ptr[r]; e < s.ptr[r+1]; e++ {
			floats.AddScaled(ri, a0+s.conf[e], src[int(s.idx[e])*k:(int(s.idx[e])+1)*k])
		}
		bb := floats.Dot(ri, ri)
		xi := x[i*k : (i+1)*k]
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
		sv.mulGram(sv.ap, sv.p, n, packed)
		active := false
		for i := range n {
			if sv.done[i] {
				continue
			}
			r := lo + i
			pi, api := sv.p[i*k:(i+1)*k], sv.ap[i*k:(i+1)*k]
			ri, xi := sv.r[i*k:(i+1)*k], x[i*k:(i+1)*k]
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
