package index

import (
	"math"
	"math/rand"
	"testing"
	"unsafe"
)

// TestDotsI8MatchesGo checks the assembly kernel against the Go one, with
// extreme values (the overflow bound) and every width up to 4096.
func TestDotsI8MatchesGo(t *testing.T) {
	t.Logf("assembly kernel: %v", haveAVX2)
	rng := rand.New(rand.NewSource(3))
	for _, width := range []int{16, 32, 48, 64, 128, 512, 4096} {
		c := codes{width: width}
		qmax := c.queryMax()
		stride, rows := width+16, 40
		data := make([]int8, rows*stride)
		for i := range data {
			data[i] = int8(rng.Intn(255) - 127)
		}
		q := make([]int16, width)
		for j := range q {
			q[j] = int16(rng.Intn(2*qmax+1) - qmax)
		}
		// One row of extremes with the query at its extremes: the largest sum.
		for j := range width {
			q[j], data[j] = int16(qmax), 127
		}
		ids := []int32{0, 5, 39, 17, 0, 22}
		got, want := make([]int32, len(ids)), make([]int32, len(ids))
		dotsI8(q, data, stride, ids, got)
		dotsI8Go(q, data, stride, ids, want)
		for i := range ids {
			if got[i] != want[i] {
				t.Fatalf("width %d, row %d: %d, Go kernel %d", width, ids[i], got[i], want[i])
			}
		}
		var exact int64
		for j := range width {
			exact += int64(q[j]) * int64(data[j])
		}
		if int64(got[0]) != exact {
			t.Fatalf("width %d: the extreme row sums to %d, want %d (overflow)", width, got[0], exact)
		}
	}
}

// TestCodesApproximateInnerProducts checks the layout (aligned rows that
// never straddle a cache line, zero padding) and that code scores are close
// to the exact inner products for vectors of uneven per-dimension scales.
func TestCodesApproximateInnerProducts(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, dim := range []int{3, 16, 20, 33, 64, 100} {
		rows := 300
		vecs := randVec(rng, rows*dim)
		for i := range vecs {
			vecs[i] *= float32(1 + i%dim) // dimension j spans about ±3(j+1)
		}
		c := quantize(vecs, dim)
		if uintptr(unsafe.Pointer(&c.data[0]))%64 != 0 || c.stride%16 != 0 || (c.stride < 64 && 64%c.stride != 0) || c.stride%64 != 0 && c.stride > 64 {
			t.Fatalf("dim %d: stride %d at %p", dim, c.stride, &c.data[0])
		}
		for i := range rows {
			for j := dim; j < c.stride; j++ {
				if c.data[i*c.stride+j] != 0 {
					t.Fatalf("dim %d: padding byte %d of row %d is %d", dim, j, i, c.data[i*c.stride+j])
				}
			}
		}
		q := randVec(rng, dim)
		q16 := make([]int16, c.width)
		f := c.query(q, q16)
		ids := make([]int32, rows)
		for i := range ids {
			ids[i] = int32(i)
		}
		out := make([]float32, rows)
		c.dists(q16, f, ids, make([]int32, rows), out)
		for i := range rows {
			row := vecs[i*dim : (i+1)*dim]
			// Codes and scaled query elements are off by at most half a step each.
			var bound float64
			for j := range dim {
				s := float64(c.scale[j])
				bound += s/2*math.Abs(float64(q[j])) + float64(f)/2*(math.Abs(float64(row[j]))/s+0.5)
			}
			exact := naiveDot(q, row)
			if got := -float64(out[i]); math.Abs(got-exact) > bound*1.01+1e-6 {
				t.Fatalf("dim %d, row %d: code score %v, exact %v, bound %v", dim, i, got, exact, bound)
			}
		}
	}
}

// TestCodesZeroQuery: a zero query scores every row 0 instead of dividing by zero.
func TestCodesZeroQuery(t *testing.T) {
	c := quantize([]float32{1, 2, 3, 4}, 2)
	q16 := make([]int16, c.width)
	f := c.query([]float32{0, 0}, q16)
	out := make([]float32, 2)
	c.dists(q16, f, []int32{0, 1}, make([]int32, 2), out)
	if out[0] != 0 || out[1] != 0 {
		t.Fatalf("zero query scored %v", out)
	}
}

// TestRound32 holds the branch-free round32 to the rounding it replaced:
// half away from zero by adding ±0.5 and truncating.
func TestRound32(t *testing.T) {
	ref := func(x float32) int32 {
		if x < 0 {
			return -int32(-x + 0.5)
		}
		return int32(x + 0.5)
	}
	xs := []float32{0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5, 127, -127, math.SmallestNonzeroFloat32}
	rng := rand.New(rand.NewSource(3))
	for range 100_000 {
		xs = append(xs, float32(rng.NormFloat64()*50))
	}
	for _, x := range xs {
		if got, want := int32(round32(x)), ref(x); got != want {
			t.Fatalf("round32(%v) = %d, want %d", x, got, want)
		}
	}
}

func BenchmarkQuantize(b *testing.B) {
	const n, dim = 100_000, 64
	rng := rand.New(rand.NewSource(5))
	v := make([]float32, n*dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	for b.Loop() {
		quantize(v, dim)
	}
}
