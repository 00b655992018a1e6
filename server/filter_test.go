package server

import (
	"slices"
	"sync/atomic"
	"testing"
)

// TestFilterExcludesSeen checks that exactly the seen rows are refused,
// including rows that share a bit of the seen mask with seen ones.
func TestFilterExcludesSeen(t *testing.T) {
	for _, seen := range [][]int32{nil, {5}, {3, 67, 130, 131, 999}} {
		l := &live{base: 1100, unavail: make([]atomic.Uint64, 18), gone: make([]atomic.Uint64, 18), cat: make([]atomic.Int32, 1100)}
		f := &itemFilter{s: &snapshot{}, l: l, added: emptySegment, self: -1, includeUnavailable: true}
		f.excludeSeen(seen)
		for id := range int32(1100) {
			if got, want := f.allow(id), !slices.Contains(seen, id); got != want {
				t.Errorf("seen %v: allow(%d) = %v, want %v", seen, id, got, want)
			}
		}
	}
}
