// Package hugepage asks the kernel to back large, long-lived arrays with
// transparent huge pages. A search reads a few hundred rows scattered over
// hundreds of megabytes of graph links and codes; with 4 KiB pages nearly
// every row also misses the TLB. On one host huge pages made a one-thread
// search of a 1M graph 8–29% faster, on others no different (BENCHMARKS.md).
// It also keeps memory set aside for the arrays of a version still to load
// (Reserve, Track), so that a load need not touch pages the process never had.
package hugepage

import "unsafe"

// size is the huge page size on amd64 and arm64 with 4 KiB base pages.
const size = 2 << 20

// Make returns a zeroed slice of n Ts whose whole huge pages are marked for
// huge pages before anything writes to them, so the kernel backs each with a
// huge page at its first write (loading a 1M-item version: 86k page faults
// instead of 272k). Nothing is collapsed afterwards: MADV_COLLAPSE, run by a
// version's load beside a serving server, took 120–250 ms, taking the
// process's memory-map lock for each page it replaced, and came with the
// worst latencies of the swap (BENCHMARKS.md, eleventh session); pages the Go
// heap reuses already backed by small pages stay small. The partial huge
// pages at either end, which other objects may share, are left alone. Where
// huge pages are unavailable or disabled it is make. While a load is tracked
// (Track), arrays of 1 MiB or more come from the memory Reserve set aside
// where a chunk there fits.
func Make[T Elem](n int) []T {
	if s := fromSpare[T](n); s != nil {
		return s
	}
	return marked[T](n)
}

// marked is make with the whole huge pages inside marked (see Make).
func marked[T Elem](n int) []T {
	s := make([]T, n)
	if b := inner(s); b != nil {
		mark(b)
	}
	return s
}

// Elem is the element type of a Make: a number, without pointers, so that
// spare memory can hold it.
type Elem interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~int | ~float32 | ~float64
}

// inner returns the whole huge pages inside s as bytes, or nil if none.
func inner[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	n := uintptr(len(s)) * unsafe.Sizeof(s[0])
	lo := (uintptr(p) + size - 1) &^ (size - 1)
	hi := (uintptr(p) + n) &^ (size - 1)
	if hi <= lo {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(p, lo-uintptr(p))), hi-lo)
}
