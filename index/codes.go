package index

import (
	"math"
	"unsafe"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/hugepage"
)

// codes is an 8-bit copy of the vectors that searches walk the graph with.
// A walk is bound by memory: it scores a few hundred rows scattered over the
// whole matrix, each a cache miss. At 64 dimensions a row of codes is one
// 64-byte cache line instead of four, which the processor fetches about
// twice as fast when many misses are in flight (BENCHMARKS.md). The best
// candidates are scored again from the float32 vectors, so results and
// their scores are exact; the codes only steer the walk.
//
// Each dimension has its own scale: value ≈ code * scale[j], codes in
// [-127, 127]. The query is scaled by the same factors and rounded to 16
// bits, so a row's score is one integer dot product times one factor.
type codes struct {
	data   []int8    // rows of stride bytes, the first dim used, the rest 0; 64-byte aligned
	stride int       // bytes per row: a multiple of 16 that does not straddle cache lines
	width  int       // dim rounded up to a multiple of 16: elements per dot product
	scale  []float32 // per dimension
}

// quantize builds the codes of n rows of dim floats.
func quantize(vecs []float32, dim int) codes {
	n := len(vecs) / dim
	c := codes{width: (dim + 15) &^ 15, scale: make([]float32, dim)}
	c.stride = c.width
	if c.stride < 64 {
		for c.stride&(c.stride-1) != 0 { // 16, 32 or 64: rows never straddle a line
			c.stride += 16
		}
	} else {
		c.stride = (c.stride + 63) &^ 63
	}
	for i := range n {
		for j, x := range vecs[i*dim : (i+1)*dim] {
			c.scale[j] = max(c.scale[j], abs32(x))
		}
	}
	inv := make([]float32, dim)
	for j, m := range c.scale {
		c.scale[j], inv[j] = 1, 0
		if m > 0 {
			c.scale[j], inv[j] = m/127, 127/m
		}
	}
	c.data = alignedInt8s(n*c.stride, 64)
	for i := range n {
		if i%4096 == 0 {
			background.Pace()
		}
		row := c.data[i*c.stride : i*c.stride+dim]
		for j, x := range vecs[i*dim : (i+1)*dim] {
			row[j] = int8(round32(x * inv[j]))
		}
	}
	return c
}

// query sets q16 (width elements) to q in the codes' scale and returns the
// factor that turns a row's integer dot product into an inner product.
func (c *codes) query(q []float32, q16 []int16) float32 {
	var m float32
	for j, x := range q {
		m = max(m, abs32(x*c.scale[j]))
	}
	if m == 0 {
		clear(q16)
		return 0
	}
	f := m / float32(c.queryMax())
	for j, x := range q {
		q16[j] = int16(round32(x * c.scale[j] / f))
	}
	clear(q16[len(q):])
	return f
}

// queryMax is the largest magnitude of a scaled query element: 2^15 - 1, or
// less for rows wide enough that a dot product could overflow an int32.
func (c *codes) queryMax() int {
	return min(math.MaxInt16, math.MaxInt32/127/c.width)
}

// dists sets out[i] to the approximate distance (negative inner product) of
// the query prepared by query to row ids[i]; tmp has room for len(ids).
//
//go:norace
func (c *codes) dists(q16 []int16, f float32, ids []int32, tmp []int32, out []float32) {
	out, tmp = out[:len(ids)], tmp[:len(ids)]
	if len(ids) == 0 {
		return
	}
	dotsI8(q16[:c.width], c.data, c.stride, ids, tmp)
	for i, v := range tmp {
		out[i] = -float32(v) * f
	}
}

// prefetch asks for the cache lines of rows ids: a hint.
func (c *codes) prefetch(ids []int32) {
	if len(ids) > 0 {
		prefetchRows(unsafe.Pointer(&c.data[0]), c.stride, c.width, &ids[0], len(ids))
	}
}

// dotsI8 sets out[i] to the integer dot product of q with the len(q) codes
// at row ids[i] (stride bytes apart) of data. len(q) is a multiple of 16;
// every row is in bounds (see dots); queryMax keeps the sums within int32.
//
//go:norace
func dotsI8(q []int16, data []int8, stride int, ids []int32, out []int32) {
	if haveAVX2 {
		prefetchRows(unsafe.Pointer(&data[0]), stride, len(q), &ids[0], len(ids))
		dotsI8AVX2(&q[0], &data[0], len(q), stride, &ids[0], len(ids), &out[0])
		return
	}
	dotsI8Go(q, data, stride, ids, out)
}

// dotsI8Go is the portable kernel and the reference for the assembly one.
//
//go:norace
func dotsI8Go(q []int16, data []int8, stride int, ids []int32, out []int32) {
	for i, id := range ids {
		row := data[int(id)*stride:][:len(q)]
		var s int32
		for j, x := range q {
			s += int32(x) * int32(row[j])
		}
		out[i] = s
	}
}

// alignedInt8s returns n zeroed int8s starting at a multiple of align bytes.
func alignedInt8s(n, align int) []int8 {
	b := hugepage.Make[int8](n + align - 1)
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & (align - 1)
	if off != 0 {
		off = align - off
	}
	return b[off : off+n : off+n]
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// round32 rounds half away from zero.
// It adds ±0.5 by x's sign bit and truncates, without a branch: signs are a
// coin toss in embeddings, and a mispredicted branch per element made it the
// larger part of quantizing a version at load.
func round32(x float32) float32 {
	half := math.Float32frombits(0x3f000000 | math.Float32bits(x)&(1<<31))
	return float32(int32(x + half))
}
