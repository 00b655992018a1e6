package perm

import (
	"slices"
	"testing"
)

func TestInverse(t *testing.T) {
	inv, ok := Inverse([]int32{2, 0, 3, 1})
	if want := []int32{1, 3, 0, 2}; !ok || !slices.Equal(inv, want) {
		t.Errorf("Inverse = %v, %v; want %v", inv, ok, want)
	}
	if inv, ok := Inverse(nil); !ok || len(inv) != 0 {
		t.Errorf("Inverse(nil) = %v, %v; want empty, true", inv, ok)
	}
	for _, bad := range [][]int32{{0, 0}, {1, 2}, {-1, 0}, {0, 1, 1}} {
		if _, ok := Inverse(bad); ok {
			t.Errorf("Inverse(%v) accepted a non-permutation", bad)
		}
	}
}
