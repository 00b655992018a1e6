package trainer

//go:generate go run gen_kernel.go

import "gonum.org/v1/gonum/floats"

// Dense products X·Yᵀ for evaluation (float32) and for the Gramian
// products of the conjugate-gradient solver (float64) run on packed
// operands through a micro-kernel that multiplies 4 rows of X by 3 rows of
// Y at a time. On amd64 with AVX2 and FMA the kernel is assembly
// (kernel_amd64.s); elsewhere, and as the reference the tests compare the
// assembly with, it is score4x3Go.
//
// Layouts, with lanes = 32 bytes / element size and kp = k rounded up to
// a multiple of lanes (padding is zero, so it adds nothing to a product):
//
//   - a quad holds rows x0..x3; element (i, d) is at (d/lanes)·4·lanes +
//     i·lanes + d%lanes;
//   - triple t of a packed Y holds rows 3t..3t+2; element (r, d) is at
//     t·3·kp + (d/lanes)·3·lanes + r·lanes + d%lanes.
//
// The kernel writes s[i·lds + 3t + r] = x_i·y_{3t+r} for all 4 rows and
// every triple, so s needs 4 rows of at least 3·triples columns.

type float interface{ ~float32 | ~float64 }

// lanesOf returns the number of elements in 32 bytes.
func lanesOf[T float]() int {
	var z T
	if any(z) == any(float32(0)) {
		return 8
	}
	return 4
}

// padded returns k rounded up to a multiple of the lane count.
func padded[T float](k int) int {
	l := lanesOf[T]()
	return (k + l - 1) / l * l
}

// packQuad packs rows (up to 4; missing rows are zero) of length k into
// dst, which must hold 4·padded(k) elements.
func packQuad[T float](dst []T, rows [][]T, k int) {
	l, kp := lanesOf[T](), padded[T](k)
	clear(dst[:4*kp])
	for i, row := range rows {
		for st, d := 0, 0; d < k; st, d = st+1, d+l {
			copy(dst[st*4*l+i*l:st*4*l+i*l+l], row[d:min(d+l, k)])
		}
	}
}

// packTriples packs the n×k row-major matrix y into dst, which must hold
// ceil(n/3)·3·padded(k) elements. Rows past n are zero.
func packTriples[T float](dst []T, y []T, n, k int) {
	l, kp := lanesOf[T](), padded[T](k)
	t := (n + 2) / 3
	clear(dst[:t*3*kp])
	for j := range n {
		base := (j/3)*3*kp + (j%3)*l
		row := y[j*k : (j+1)*k]
		for st, d := 0, 0; d < k; st, d = st+1, d+l {
			copy(dst[base+st*3*l:base+st*3*l+l], row[d:min(d+l, k)])
		}
	}
}

// score4x3Go is the portable micro-kernel: steps is kp/lanes.
func score4x3Go[T float](x, y []T, steps, triples int, s []T, lds int) {
	l := lanesOf[T]()
	for t := range triples {
		yt := y[t*steps*3*l:]
		var acc [4][3]T
		for st := range steps {
			xs, ys := x[st*4*l:], yt[st*3*l:]
			for i := range 4 {
				for r := range 3 {
					var sum T
					for e := range l {
						sum += xs[i*l+e] * ys[r*l+e]
					}
					acc[i][r] += sum
				}
			}
		}
		for i := range 4 {
			for r := range 3 {
				s[i*lds+3*t+r] = acc[i][r]
			}
		}
	}
}

// score4x3 dispatches to the fastest available micro-kernel.
func score4x3[T float](x, y []T, steps, triples int, s []T, lds int) {
	if triples == 0 || steps == 0 {
		return
	}
	// Bounds the assembly relies on.
	l := lanesOf[T]()
	_ = x[4*steps*l-1]
	_ = y[triples*3*steps*l-1]
	_ = s[3*lds+3*triples-1]
	if !haveAVX2 {
		score4x3Go(x, y, steps, triples, s, lds)
		return
	}
	switch x := any(x).(type) {
	case []float32:
		score4x3F32(&x[0], &any(y).([]float32)[0], steps, triples, &any(s).([]float32)[0], lds)
	case []float64:
		score4x3F64(&x[0], &any(y).([]float64)[0], steps, triples, &any(s).([]float64)[0], lds)
	}
}

// dotAxpyGo is the portable form of dotAxpy.
func dotAxpyGo(out, v, y []float64, c float64) {
	floats.AddScaled(out, c*floats.Dot(y, v), y)
}

// dotAxpy sets out += c·(y·v)·y; the three slices have equal length.
func dotAxpy(out, v, y []float64, c float64) {
	n := len(out)
	if n == 0 {
		return
	}
	if !haveAVX2 {
		dotAxpyGo(out, v, y, c)
		return
	}
	_, _ = v[n-1], y[n-1]
	dotAxpyF64(&out[0], &v[0], &y[0], n, c)
}
