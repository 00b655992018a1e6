package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/recserve/recserve/internal/parallel"
)

var errNotPositiveDefinite = errors.New("trainer: normal equations not positive definite")

// Model is a trained factorization. Row u of UserVectors (Dim values,
// row-major) belongs to the Dataset's UserIDs[u], and row i of ItemVectors
// to ItemIDs[i]. The score of (u, i) is the inner product of their rows.
type Model struct {
	Dim         int
	UserVectors []float32
	ItemVectors []float32
}

// NumUsers returns the number of user rows.
func (m *Model) NumUsers() int { return len(m.UserVectors) / m.Dim }

// NumItems returns the number of item rows.
func (m *Model) NumItems() int { return len(m.ItemVectors) / m.Dim }

// User returns the vector of user row u.
func (m *Model) User(u int) []float32 { return m.UserVectors[u*m.Dim : (u+1)*m.Dim] }

// Item returns the vector of item row i.
func (m *Model) Item(i int) []float32 { return m.ItemVectors[i*m.Dim : (i+1)*m.Dim] }

// problem is a Dataset arranged for alternating least squares.
type problem struct {
	users, items side
}

func newProblem(d *Dataset, opts Options) *problem {
	nu, ni := d.NumUsers(), d.NumItems()
	nnz := d.NumInteractions()
	p := &problem{
		users: side{rows: nu, ptr: make([]int, nu+1), idx: make([]int32, 0, nnz), conf: make([]float64, 0, nnz), lambda: make([]float64, nu)},
		items: side{rows: ni, ptr: make([]int, ni+1), idx: make([]int32, nnz), conf: make([]float64, nnz), lambda: make([]float64, ni)},
	}
	for u := range nu {
		items, w := d.UserItems(u), d.UserWeights(u)
		for j, i := range items {
			p.users.idx = append(p.users.idx, i)
			p.users.conf = append(p.users.conf, opts.Alpha*float64(w[j]))
			p.items.ptr[i+1]++
		}
		p.users.ptr[u+1] = len(p.users.idx)
		p.users.lambda[u] = opts.lambda(len(items), ni)
	}
	for i := range ni {
		p.items.lambda[i] = opts.lambda(p.items.ptr[i+1], nu)
		p.items.ptr[i+1] += p.items.ptr[i]
	}
	// Transpose; users are visited in ascending order, so each item's
	// users come out sorted.
	fill := make([]int, ni)
	for u := range nu {
		for e := p.users.ptr[u]; e < p.users.ptr[u+1]; e++ {
			i := p.users.idx[e]
			at := p.items.ptr[i] + fill[i]
			fill[i]++
			p.items.idx[at] = int32(u)
			p.items.conf[at] = p.users.conf[e]
		}
	}
	return p
}

// initStdDev is σ* in the N(0, σ*²/Factors) initialization of item factors.
const initStdDev = 0.1

// Train fits an implicit ALS model to d. Item factors start random from
// opts.Seed and user factors at zero; each iteration solves all users, then
// all items. The result depends only on d and opts other than Workers. It
// returns ctx.Err() if ctx is done before training finishes.
func Train(ctx context.Context, d *Dataset, opts Options) (*Model, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	k := opts.Factors
	nu, ni := d.NumUsers(), d.NumItems()
	p := newProblem(d, opts)
	x := make([]float64, nu*k)
	y := make([]float64, ni*k)
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x1a15))
	sd := initStdDev / math.Sqrt(float64(k))
	for i := range y {
		y[i] = sd * rng.NormFloat64()
	}
	workers := opts.workers()
	solvers := make([]*solver, workers)
	for w := range solvers {
		solvers[w] = newSolver(k)
	}
	for it := range opts.Iterations {
		if err := halfSweep(ctx, opts, &p.users, x, y, ni, solvers); err != nil {
			return nil, fmt.Errorf("iteration %d, users: %w", it+1, err)
		}
		if err := halfSweep(ctx, opts, &p.items, y, x, nu, solvers); err != nil {
			return nil, fmt.Errorf("iteration %d, items: %w", it+1, err)
		}
	}
	return &Model{Dim: k, UserVectors: toFloat32(x), ItemVectors: toFloat32(y)}, nil
}

func halfSweep(ctx context.Context, opts Options, s *side, dst, src []float64, m int, solvers []*solver) error {
	gram, err := gramian(ctx, len(solvers), src, m, opts.Factors, opts.Unobserved)
	if err != nil {
		return err
	}
	return sweep(ctx, opts, s, dst, src, gram, solvers)
}

func toFloat32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, f := range v {
		out[i] = float32(f)
	}
	return out
}

func toFloat64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, f := range v {
		out[i] = float64(f)
	}
	return out
}

// Loss returns the training objective of m on d under opts (see the
// package documentation): weighted squared error over all user×item pairs
// plus the frequency-scaled regularization. Computing it costs about one
// row update per user.
func (m *Model) Loss(d *Dataset, opts Options) float64 {
	k := m.Dim
	opts.Factors = k
	p := newProblem(d, opts)
	x, y := toFloat64(m.UserVectors), toFloat64(m.ItemVectors)
	return loss(p, opts, x, y)
}

func loss(p *problem, opts Options, x, y []float64) float64 {
	k := opts.Factors
	a0 := opts.Unobserved
	gram, _ := gramian(context.Background(), opts.workers(), y, p.items.rows, k, a0)
	blocks := (p.users.rows + blockRows - 1) / blockRows
	parts := make([]float64, blocks)
	gx := make([][]float64, opts.workers())
	for w := range gx {
		gx[w] = make([]float64, k)
	}
	_ = parallel.For(context.Background(), opts.workers(), blocks, func(w, b int) {
		var sum float64
		for u := b * blockRows; u < min((b+1)*blockRows, p.users.rows); u++ {
			xu := x[u*k : (u+1)*k]
			g := gx[w]
			clear(g)
			for i := range k {
				g[i] = dot64(gram[i*k:(i+1)*k], xu)
			}
			sum += dot64(g, xu) + p.users.lambda[u]*dot64(xu, xu)
			for e := p.users.ptr[u]; e < p.users.ptr[u+1]; e++ {
				yi := y[int(p.users.idx[e])*k : (int(p.users.idx[e])+1)*k]
				s := dot64(xu, yi)
				sum += (a0+p.users.conf[e])*(1-s)*(1-s) - a0*s*s
			}
		}
		parts[b] = sum
	})
	var total float64
	for _, s := range parts {
		total += s
	}
	for i := range p.items.rows {
		yi := y[i*k : (i+1)*k]
		total += p.items.lambda[i] * dot64(yi, yi)
	}
	return total
}

func dot64(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}
