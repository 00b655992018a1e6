package index

import (
	"math"
	"math/rand"
	"testing"
)

// naiveDot is the reference: a float64 accumulation in index order.
func naiveDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestDotMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := range 80 {
		a, b := make([]float32, n), make([]float32, n+3) // b may be longer
		var mag float64
		for i := range a {
			a[i] = float32(rng.NormFloat64())
			b[i] = float32(rng.NormFloat64())
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got, want := float64(Dot(a, b)), naiveDot(a, b)
		if math.Abs(got-want) > 1e-5*(mag+1) {
			t.Errorf("n=%d: Dot = %v, naive = %v", n, got, want)
		}
	}
}

func TestDotShortSecondPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Dot with a shorter b did not panic")
		}
	}()
	Dot(make([]float32, 9), make([]float32, 8))
}

func FuzzDot(f *testing.F) {
	f.Add(float32(1), float32(-2), 17)
	f.Fuzz(func(t *testing.T, x, y float32, n int) {
		if n < 0 || n > 300 || math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) ||
			math.IsNaN(float64(y)) || math.IsInf(float64(y), 0) || math.Abs(float64(x*y)) > 1e30 {
			t.Skip()
		}
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = x*float32(i%7-3), y*float32(i%5-2)
		}
		var mag float64
		for i := range a {
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got, want := float64(Dot(a, b)), naiveDot(a, b)
		if math.Abs(got-want) > 1e-5*mag+1e-30 {
			t.Errorf("n=%d: Dot = %v, naive = %v", n, got, want)
		}
	})
}
