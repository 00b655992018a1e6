package index

import "unsafe"

// Dot returns the inner product of a and b over len(a) elements; b must be
// at least as long as a. It is the single scoring kernel of every backend,
// so equal inputs give bit-identical scores across backends. On amd64 with
// AVX2 and FMA it runs an assembly kernel over the largest multiple of 8
// elements and adds the rest in Go; elsewhere it is dotGo.
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
	if !haveAVX2 || len(a) < 8 {
		return dotGo(a, b)
	}
	n8 := len(a) &^ 7
	s := dotAVX2(&a[0], &b[0], n8)
	for i := n8; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

// dotGo is the portable kernel and the reference for the assembly one:
// plain Go, unrolled by 8 with four accumulators.
//
//go:norace
func dotGo(a, b []float32) float32 {
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

// dots sets out[i] = Dot(q, row ids[i] of vecs) for every i, bit-identical
// to Dot. The caller guarantees every ID is a row of vecs: IDs come from
// link lists, which the build fills with its own IDs and ReadHNSW checks
// (checkLinks) before a graph is used.
// With the assembly kernel and dim a multiple of 8, all rows are
// prefetched before scoring, so their cache misses overlap.
//
//go:norace
func dots(q, vecs []float32, dim int, ids []int32, out []float32) {
	out = out[:len(ids)]
	if haveAVX2 && dim%8 == 0 && len(ids) > 0 && len(q) == dim {
		prefetchRows(unsafe.Pointer(&vecs[0]), 4*dim, 4*dim, &ids[0], len(ids))
		dotsAVX2(&q[0], &vecs[0], dim, &ids[0], len(ids), &out[0])
		return
	}
	for i, id := range ids {
		off := int(id) * dim
		out[i] = Dot(q, vecs[off:off+dim:off+dim])
	}
}
