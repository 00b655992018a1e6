package trainer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveProduct returns x_i·y_j for all 4 rows of x and n rows of y.
func naiveProduct[T float](xrows [][]T, y []T, n, k int) [][]float64 {
	out := make([][]float64, len(xrows))
	for i, x := range xrows {
		out[i] = make([]float64, n)
		for j := range n {
			for d := range k {
				out[i][j] += float64(x[d]) * float64(y[j*k+d])
			}
		}
	}
	return out
}

func testKernel[T float](t *testing.T, tol float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range []int{1, 3, 7, 8, 9, 16, 31, 64, 100} {
		for _, n := range []int{1, 2, 3, 4, 10, 33} {
			for _, m := range []int{1, 3, 4} {
				xrows := make([][]T, m)
				for i := range xrows {
					xrows[i] = make([]T, k)
					for d := range xrows[i] {
						xrows[i][d] = T(rng.NormFloat64())
					}
				}
				y := make([]T, n*k)
				for i := range y {
					y[i] = T(rng.NormFloat64())
				}
				kp := padded[T](k)
				triples := (n + 2) / 3
				xq := make([]T, 4*kp)
				yp := make([]T, triples*3*kp)
				packQuad(xq, xrows, k)
				packTriples(yp, y, n, k)
				steps := kp / lanesOf[T]()
				lds := 3*triples + 1
				want := naiveProduct(xrows, y, n, k)
				for name, fn := range map[string]func(x, y []T, steps, triples int, s []T, lds int){
					"go":       score4x3Go[T],
					"dispatch": score4x3[T],
				} {
					s := make([]T, 4*lds)
					fn(xq, yp, steps, triples, s, lds)
					for i := range m {
						for j := range n {
							got, w := float64(s[i*lds+j]), want[i][j]
							if math.Abs(got-w) > tol*(1+math.Sqrt(float64(k))) {
								t.Fatalf("%s k=%d n=%d: s[%d][%d] = %v, want %v", name, k, n, i, j, got, w)
							}
						}
					}
					for i := m; i < 4; i++ {
						for j := range n {
							if s[i*lds+j] != 0 {
								t.Fatalf("%s: padding row %d scored %v", name, i, s[i*lds+j])
							}
						}
					}
				}
			}
		}
	}
}

func TestKernelFloat32(t *testing.T) { testKernel[float32](t, 1e-5) }
func TestKernelFloat64(t *testing.T) { testKernel[float64](t, 1e-12) }

func TestDotAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for n := range 40 {
		v, y, out := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range n {
			v[i], y[i], out[i] = rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()
		}
		want := slices.Clone(out)
		dotAxpyGo(want, v, y, 0.7)
		dotAxpy(out, v, y, 0.7)
		for i := range n {
			if math.Abs(out[i]-want[i]) > 1e-12*(1+math.Abs(want[i])) {
				t.Fatalf("n=%d: out[%d] = %v, want %v", n, i, out[i], want[i])
			}
		}
	}
}

func TestKernelHasAssembly(t *testing.T) {
	t.Logf("AVX2+FMA assembly kernel in use: %v", haveAVX2)
}

func BenchmarkKernelFloat32(b *testing.B) { benchKernel[float32](b) }
func BenchmarkKernelFloat64(b *testing.B) { benchKernel[float64](b) }

func benchKernel[T float](b *testing.B) {
	const k, n = 256, 192
	kp := padded[T](k)
	x := make([]T, 4*kp)
	y := make([]T, n*kp)
	for i := range x {
		x[i] = 1
	}
	for i := range y {
		y[i] = 1
	}
	s := make([]T, 4*n)
	steps := kp / lanesOf[T]()
	b.SetBytes(0)
	for b.Loop() {
		score4x3(x, y, steps, n/3, s, n)
	}
	b.ReportMetric(float64(2*4*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFlop/s")
}

// mulGram multiplies by the Gramian in panels of triples; k = 200 and 300
// need more than one panel.
func TestMulGram(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 1))
	for _, k := range []int{1, 5, 200, 300} {
		for _, n := range []int{1, 5, blockRows} {
			g := make([]float64, k*k)
			for i := range k {
				for j := i; j < k; j++ {
					g[i*k+j] = rng.NormFloat64()
					g[j*k+i] = g[i*k+j]
				}
			}
			src := make([]float64, n*k)
			for i := range src {
				src[i] = rng.NormFloat64()
			}
			dst := make([]float64, n*k)
			newSolver(k).mulGram(dst, src, n, packGram(g, k))
			for i := range n {
				for j := range k {
					var want float64
					for d := range k {
						want += src[i*k+d] * g[d*k+j]
					}
					if math.Abs(dst[i*k+j]-want) > 1e-10*float64(k) {
						t.Fatalf("k=%d n=%d: (%d,%d) = %v, want %v", k, n, i, j, dst[i*k+j], want)
					}
				}
			}
		}
	}
}
