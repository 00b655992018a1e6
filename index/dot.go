package index

// Dot returns the inner product of a and b over len(a) elements; b must be
// at least as long as a. It is plain Go, unrolled by 8 with four
// accumulators, and is the single scoring kernel of every backend, so equal
// inputs give bit-identical scores across backends.
//
// Dot only reads its arguments, which in this package are the immutable
// vectors matrix and the caller's query, so it is excluded from race
// instrumentation: under -race it would otherwise account for about half of
// the package's test time. Races on the index's own state (link lists,
// locks, scratch space) are still detected.
//
//go:norace
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x := a[i : i+8 : i+8]
		y := b[i : i+8 : i+8]
		s0 += x[0]*y[0] + x[4]*y[4]
		s1 += x[1]*y[1] + x[5]*y[5]
		s2 += x[2]*y[2] + x[6]*y[6]
		s3 += x[3]*y[3] + x[7]*y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
