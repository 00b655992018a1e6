// Package hugepage asks the kernel to back large, long-lived arrays with
// transparent huge pages. A search reads a few hundred rows scattered over
// hundreds of megabytes of graph links and codes; with 4 KiB pages nearly
// every row also misses the TLB. On one host huge pages made a one-thread
// search of a 1M graph 8–29% faster, on others no different (BENCHMARKS.md).
package hugepage

import "unsafe"

// size is the huge page size on amd64 and arm64 with 4 KiB base pages.
const size = 2 << 20

// Advise asks for huge pages under the whole huge pages inside s and
// collapses those already backed by small pages, keeping the contents. The
// partial pages at either end, which other objects may share, are left
// alone. It is a hint: where huge pages are unsupported or disabled
// (transparent_hugepage/enabled is "never") it does nothing and reports
// why; callers may ignore the error.
func Advise[T any](s []T) error {
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
	return advise(unsafe.Slice((*byte)(unsafe.Add(p, lo-uintptr(p))), hi-lo))
}
