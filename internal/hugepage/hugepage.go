// Package hugepage asks the kernel to back large, long-lived arrays with
// transparent huge pages. A search reads a few hundred rows scattered over
// hundreds of megabytes of graph links and codes; with 4 KiB pages nearly
// every row also misses the TLB. On one host huge pages made a one-thread
// search of a 1M graph 8–29% faster, on others no different (BENCHMARKS.md).
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
// huge pages are unavailable or disabled it is make.
func Make[T any](n int) []T {
	s := make([]T, n)
	if b := inner(s); b != nil {
		mark(b)
	}
	return s
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
