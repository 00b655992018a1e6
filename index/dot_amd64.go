//go:build !purego

package index

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAVX2 selects the AVX2+FMA kernels of dot_amd64.s.
var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotAVX2 returns the inner product of the n floats at a and b; n must be
// a multiple of 8.
//
//go:noescape
func dotAVX2(a, b *float32, n int) float32

// dotsAVX2 sets out[i] to the inner product of the dim floats at q with
// row ids[i] of base, for i < n. dim must be a multiple of 8 and every row
// in bounds.
//
//go:noescape
func dotsAVX2(q, base *float32, dim int, ids *int32, n int, out *float32)

// dotsI8AVX2 sets out[i] to the int32 dot product of the n int16s at q with
// the n int8s at base + ids[i]*stride, for i < count. n must be a multiple
// of 16 and every row in bounds.
//
//go:noescape
func dotsI8AVX2(q *int16, base *int8, n, stride int, ids *int32, count int, out *int32)

// prefetchRows asks for the cache lines of the size bytes at base +
// ids[i]*stride, for i < n: all rows before any is read, so that their
// misses overlap.
//
//go:noescape
func prefetchRows(base unsafe.Pointer, stride, size int, ids *int32, n int)

// prefetch asks for the cache lines holding the n int32s at p, n > 0.
//
//go:noescape
func prefetch(p *int32, n int)
