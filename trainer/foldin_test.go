package trainer

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func relDiff32(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / max(den, 1e-300))
}

// Folding a training user in gives the vector that user would get from
// one more user sweep of the model with the item factors fixed.
func TestFoldInMatchesUserSweep(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	d := randomDataset(rng, 150, 90, 25) // weighted events
	for _, steps := range []int{0, 3} {
		opts := smallOptions()
		opts.Iterations, opts.CGSteps, opts.Alpha = 4, steps, 0.7
		m, err := Train(context.Background(), d, opts)
		if err != nil {
			t.Fatal(err)
		}
		// One more user sweep, solved exactly, against the model's items.
		sweepOpts := opts
		sweepOpts.CGSteps = 0
		p := newProblem(d, sweepOpts)
		y := toFloat64(m.ItemVectors)
		x := make([]float64, d.NumUsers()*m.Dim)
		if err := halfSweep(context.Background(), sweepOpts, &p.users, x, y, d.NumItems(), []*solver{newSolver(m.Dim)}); err != nil {
			t.Fatal(err)
		}
		want := toFloat32(x)
		f := NewFolder(m.ItemVectors, m.Dim, opts)
		for u := range d.NumUsers() {
			got := f.FoldIn(d.UserItems(u), d.UserWeights(u))
			w := want[u*m.Dim : (u+1)*m.Dim]
			if r := relDiff32(got, w); r > 1e-4 || (len(d.UserItems(u)) == 0 && r != 0) {
				t.Fatalf("CGSteps=%d user %d: fold-in differs by %.2g: %v vs %v", steps, u, r, got, w)
			}
			if steps == 0 {
				// The model's own user vectors were solved against items
				// that changed afterwards, so they differ, but the
				// function form must agree with the Folder exactly.
				if g2 := FoldIn(m.ItemVectors, m.Dim, d.UserItems(u), d.UserWeights(u), opts); relDiff32(g2, got) != 0 {
					t.Fatalf("FoldIn and Folder.FoldIn differ for user %d", u)
				}
			}
		}
	}
}

// Users with fewer than k/2 items take the Woodbury path, the others the
// Cholesky path; both must match the textbook dense solution.
func TestFoldInMatchesDenseSolution(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const k, items = 7, 30
	d := randomDataset(rng, 20, items, 10)
	opts := Options{Factors: k, Reg: 0.05, Alpha: 2, Unobserved: 0.2, RegExponent: 0.7}
	y32 := make([]float32, items*k)
	for i := range y32 {
		y32[i] = float32(rng.NormFloat64())
	}
	f := NewFolder(y32, k, opts)
	for u := range d.NumUsers() {
		want := toFloat32(denseSolve(t, d, u, toFloat64(y32), k, opts))
		if got := f.FoldIn(d.UserItems(u), d.UserWeights(u)); relDiff32(got, want) > 1e-5 {
			t.Fatalf("user %d: %v, want %v", u, got, want)
		}
	}
}

func TestFoldInInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	const k, items = 5, 12
	y := make([]float32, items*k)
	for i := range y {
		y[i] = float32(rng.NormFloat64())
	}
	f := NewFolder(y, k, smallOptions())
	ref := f.FoldIn([]int32{2, 7}, []float32{3, 1})
	tests := []struct {
		name    string
		items   []int32
		weights []float32
		want    []float32
	}{
		{"repeats sum", []int32{7, 2, 2}, []float32{1, 1, 2}, ref},
		{"out of range ignored", []int32{2, -1, 7, items}, []float32{3, 9, 1, 9}, ref},
		{"empty", nil, nil, make([]float32, k)},
		{"only unknown", []int32{items + 5}, nil, make([]float32, k)},
		{"nil weights mean 1", []int32{2, 7}, nil, f.FoldIn([]int32{2, 7}, []float32{1, 1})},
	}
	for _, tt := range tests {
		if got := f.FoldIn(tt.items, tt.weights); relDiff32(got, tt.want) > 1e-6 || len(got) != k {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// Concurrent use shares the Folder's scratch pool.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if got := f.FoldIn([]int32{2, 7}, []float32{3, 1}); relDiff32(got, ref) != 0 {
					t.Error("concurrent FoldIn differs")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestNewFolderPanicsOnBadShape(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for 7 values of dim 2")
		}
	}()
	NewFolder(make([]float32, 7), 2, smallOptions())
}

// BenchmarkFoldIn folds in a user with 50 items against 64-dimensional
// vectors of 20,000 items; BenchmarkFoldInDefault does the same at the
// default dimension.
func BenchmarkFoldIn(b *testing.B) { benchFoldIn(b, 64, 50) }

func BenchmarkFoldInDefault(b *testing.B) { benchFoldIn(b, DefaultOptions().Factors, 50) }

func benchFoldIn(b *testing.B, dim, n int) {
	const nItems = 20000
	rng := rand.New(rand.NewPCG(1, 1))
	y := make([]float32, nItems*dim)
	for i := range y {
		y[i] = float32(rng.NormFloat64() * 0.1)
	}
	opts := DefaultOptions()
	f := NewFolder(y, dim, opts)
	items := make([]int32, n)
	weights := make([]float32, n)
	for i := range items {
		items[i] = int32(rng.IntN(nItems))
		weights[i] = 1
	}
	b.ReportAllocs()
	for b.Loop() {
		f.FoldIn(items, weights)
	}
}
