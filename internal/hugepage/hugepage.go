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
// huge page at its first write: no 4 KiB page faults and no collapse, a copy
// of every page, afterwards (loading a 1M-item version: 86k page faults
// instead of 272k, and no collapses). Memory the Go heap reuses may already
// be backed by small pages; Advise, once the slice is filled, collapses
// those. Where huge pages are unavailable it is make.
func Make[T any](n int) []T {
	s := make([]T, n)
	if b := inner(s); b != nil {
		_ = mark(b)
	}
	return s
}

// Advise asks for huge pages under the whole huge pages inside s and
// collapses those still backed by small pages, keeping the contents (pages
// already huge are left as they are). The partial pages at either end, which
// other objects may share, are left alone. It is a hint: where huge pages
// are unsupported or disabled (transparent_hugepage/enabled is "never") it
// does nothing and reports why; callers may ignore the error.
func Advise[T any](s []T) error {
	b := inner(s)
	if b == nil {
		return nil
	}
	if err := mark(b); err != nil {
		return err
	}
	return collapse(b)
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
