//go:build !amd64 || purego

package index

import "unsafe"

const haveAVX2 = false

func dotAVX2(a, b *float32, n int) float32 { panic("index: no assembly kernel") }

func dotsAVX2(q, base *float32, dim int, ids *int32, n int, out *float32) {
	panic("index: no assembly kernel")
}

func dotsI8AVX2(q *int16, base *int8, n, stride int, ids *int32, count int, out *int32) {
	panic("index: no assembly kernel")
}

// prefetchRows is a hint only: without assembly it does nothing.
func prefetchRows(base unsafe.Pointer, stride, size int, ids *int32, n int) {}

// prefetch is a hint only: without assembly it does nothing.
func prefetch(p *int32, n int) {}
