package trainer

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randomDataset returns users×items interactions with random weights in
// [1, 5); each user has 0 to maxItems items.
func randomDataset(rng *rand.Rand, users, items, maxItems int) *Dataset {
	d := NewDataset()
	for i := range items {
		d.AddItem(fmt.Sprint("i", i))
	}
	for u := range users {
		d.AddUser(fmt.Sprint("u", u))
		for range rng.IntN(maxItems + 1) {
			d.Add(fmt.Sprint("u", u), fmt.Sprint("i", rng.IntN(items)), 1+4*rng.Float32())
		}
	}
	return d
}

// denseSolve solves (Yᵀ C_u Y + λ_u I) x = Yᵀ C_u p_u with the full dense
// C_u, the textbook form of the iALS user update.
func denseSolve(t *testing.T, d *Dataset, u int, y []float64, k int, opts Options) []float64 {
	t.Helper()
	m := d.NumItems()
	if len(d.UserItems(u)) == 0 {
		return make([]float64, k) // b = 0 (and A may be singular when α0 = 0)
	}
	c := make([]float64, m)
	p := make([]float64, m)
	for i := range c {
		c[i] = opts.Unobserved
	}
	w := d.UserWeights(u)
	for j, i := range d.UserItems(u) {
		c[i] += opts.Alpha * float64(w[j])
		p[i] = 1
	}
	ym := mat.NewDense(m, k, y)
	var cy mat.Dense
	cy.Apply(func(i, _ int, v float64) float64 { return c[i] * v }, ym)
	var a mat.Dense
	a.Mul(ym.T(), &cy)
	lambda := opts.Reg * math.Pow(float64(len(d.UserItems(u)))+opts.Unobserved*float64(m), opts.RegExponent)
	for i := range k {
		a.Set(i, i, a.At(i, i)+lambda)
	}
	var b mat.VecDense
	b.MulVec(cy.T(), mat.NewVecDense(m, p))
	var x mat.VecDense
	if err := x.SolveVec(&a, &b); err != nil {
		t.Fatal(err)
	}
	return x.RawVector().Data
}

func relDiff(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num += (a[i] - b[i]) * (a[i] - b[i])
		den += b[i] * b[i]
	}
	return math.Sqrt(num / max(den, 1e-300))
}

func TestSolverMatchesDenseSolution(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		k, users, items, maxItems int
		opts                      Options
	}{
		{k: 4, users: 9, items: 12, maxItems: 6, opts: Options{Reg: 0.1, Alpha: 2, Unobserved: 0.5, RegExponent: 1}},
		{k: 8, users: 70, items: 30, maxItems: 12, opts: Options{Reg: 0.01, Alpha: 1, Unobserved: 0.1, RegExponent: 0.5}},
		{k: 13, users: 130, items: 50, maxItems: 40, opts: Options{Reg: 0.5, Alpha: 0.3, Unobserved: 1, RegExponent: 0}},
		{k: 6, users: 20, items: 25, maxItems: 5, opts: Options{Reg: 0.05, Alpha: 3, Unobserved: 0, RegExponent: 1}},
	} {
		for _, steps := range []int{0, 200} {
			t.Run(fmt.Sprintf("k=%d/cg=%d", tc.k, steps), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(tc.k), 3))
				d := randomDataset(rng, tc.users, tc.items, tc.maxItems)
				opts := tc.opts
				opts.Factors, opts.CGSteps = tc.k, steps
				y := make([]float64, tc.items*tc.k)
				for i := range y {
					y[i] = rng.NormFloat64()
				}
				p := newProblem(d, opts)
				x := make([]float64, tc.users*tc.k)
				for i := range x {
					x[i] = rng.NormFloat64() // warm start for CG
				}
				solvers := []*solver{newSolver(tc.k), newSolver(tc.k)}
				if err := halfSweep(ctx, opts, &p.users, x, y, tc.items, solvers); err != nil {
					t.Fatal(err)
				}
				for u := range tc.users {
					want := denseSolve(t, d, u, y, tc.k, opts)
					if got := x[u*tc.k : (u+1)*tc.k]; relDiff(got, want) > 1e-9 {
						t.Fatalf("user %d (%d items): got %v, want %v", u, len(d.UserItems(u)), got, want)
					}
				}
			})
		}
	}
}

// rowObjective is the part of the loss that depends on user row u.
func rowObjective(d *Dataset, u int, x, y []float64, k int, opts Options) float64 {
	m := d.NumItems()
	obs := map[int32]float64{}
	w := d.UserWeights(u)
	for j, i := range d.UserItems(u) {
		obs[i] = opts.Alpha * float64(w[j])
	}
	var f float64
	for i := range m {
		s := dot64(x, y[i*k:(i+1)*k])
		if c, ok := obs[int32(i)]; ok {
			f += (opts.Unobserved + c) * (1 - s) * (1 - s)
		} else {
			f += opts.Unobserved * s * s
		}
	}
	return f + opts.lambda(len(d.UserItems(u)), m)*dot64(x, x)
}

// A few warm-started CG steps never increase a row's objective, which is
// what makes the training loss non-increasing with CGSteps > 0.
func TestConjugateGradientDescends(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const k, users, items = 16, 64, 40
	d := randomDataset(rng, users, items, 20)
	opts := Options{Factors: k, Reg: 0.01, Alpha: 1, Unobserved: 0.05, RegExponent: 1}
	y := make([]float64, items*k)
	for i := range y {
		y[i] = rng.NormFloat64()
	}
	p := newProblem(d, opts)
	for _, steps := range []int{1, 2, 3} {
		opts.CGSteps = steps
		x := make([]float64, users*k)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		before := make([]float64, users)
		for u := range users {
			before[u] = rowObjective(d, u, x[u*k:(u+1)*k], y, k, opts)
		}
		if err := halfSweep(context.Background(), opts, &p.users, x, y, items, []*solver{newSolver(k)}); err != nil {
			t.Fatal(err)
		}
		for u := range users {
			after := rowObjective(d, u, x[u*k:(u+1)*k], y, k, opts)
			if after > before[u]*(1+1e-12) {
				t.Fatalf("steps=%d user %d: objective rose from %v to %v", steps, u, before[u], after)
			}
		}
	}
}

// BenchmarkGramian32 is the fold-in Gramian a server computes when it loads a
// version: float32 item rows.
func BenchmarkGramian32(b *testing.B) {
	const n, k = 200_000, 64
	rng := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, n*k)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gramian(context.Background(), 1, v, n, k, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGramianIndependentOfWorkers(t *testing.T) {
	for _, k := range []int{1, 5, 13, 64} { // quads and triples of columns overlap the diagonal differently
		t.Run(fmt.Sprint(k), func(t *testing.T) { testGramian(t, 3*gramChunk+17, k) })
	}
}

func testGramian(t *testing.T, n, k int) {
	rng := rand.New(rand.NewPCG(9, uint64(k)))
	v := make([]float64, n*k)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	g1, err := gramian(context.Background(), 1, v, n, k, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	g3, err := gramian(context.Background(), 3, v, n, k, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	v32 := toFloat32(v) // float32 rows are packed straight into float64 panels
	g32, err := gramian(context.Background(), 2, v32, n, k, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if want32, _ := gramian(context.Background(), 2, toFloat64(v32), n, k, 0.5); !slices.Equal(g32, want32) {
		t.Fatal("gramian of float32 rows differs from that of the same values as float64")
	}
	vm := mat.NewDense(n, k, v)
	var want mat.Dense
	want.Mul(vm.T(), vm)
	want.Scale(0.5, &want)
	for i := range k {
		for j := range k {
			if g1[i*k+j] != g3[i*k+j] {
				t.Fatalf("gramian differs between 1 and 3 workers at (%d,%d)", i, j)
			}
			if math.Abs(g1[i*k+j]-want.At(i, j)) > 1e-9*float64(n) {
				t.Fatalf("gramian(%d,%d) = %v, want %v", i, j, g1[i*k+j], want.At(i, j))
			}
		}
	}
}
