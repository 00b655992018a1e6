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

// randVec returns n standard normal floats.
func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestDotMatchesNaive compares Dot (the assembly kernel where available)
// and dotGo with a float64 reference on random inputs of many lengths.
func TestDotMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := range 300 {
		a, b := randVec(rng, n), randVec(rng, n+3) // b may be longer
		var mag float64
		for i := range a {
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		want := naiveDot(a, b)
		for name, dot := range map[string]func(a, b []float32) float32{"Dot": Dot, "dotGo": dotGo} {
			if got := float64(dot(a, b)); math.Abs(got-want) > 1e-5*(mag+1) {
				t.Errorf("n=%d: %s = %v, naive = %v", n, name, got, want)
			}
		}
	}
}

// TestDotsMatchesDot checks that the batch kernel is bit-identical to Dot,
// for dimensions the assembly handles and for the others.
func TestDotsMatchesDot(t *testing.T) {
	t.Logf("assembly kernel: %v", haveAVX2)
	rng := rand.New(rand.NewSource(2))
	for _, dim := range []int{1, 7, 8, 16, 24, 32, 40, 64, 65, 96, 128, 200, 256} {
		rows := 50
		vecs, q := randVec(rng, rows*dim), randVec(rng, dim)
		for _, n := range []int{0, 1, 2, 31, 64} {
			ids := make([]int32, n)
			for i := range ids {
				ids[i] = int32(rng.Intn(rows))
			}
			out := make([]float32, n+1)
			out[n] = 42 // beyond len(ids): untouched
			dots(q, vecs, dim, ids, out)
			for i, id := range ids {
				if want := Dot(q, vecs[int(id)*dim:][:dim]); out[i] != want {
					t.Fatalf("dim %d, %d ids: dots[%d] = %v, Dot = %v", dim, n, i, out[i], want)
				}
			}
			if out[n] != 42 {
				t.Fatalf("dim %d: dots wrote past len(ids)", dim)
			}
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
