package server

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// TestPopularityOrder holds the counting sort to a stable comparison sort:
// rows by descending count, ties by row, each with its share of the total.
func TestPopularityOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 1000} {
		counts := make([]int32, n)
		total := 0
		for i := range counts {
			if rng.IntN(3) > 0 { // a third of the rows never seen
				counts[i] = int32(rng.IntN(5)) // many ties
				total += int(counts[i])
			}
		}
		want := make([]int32, n)
		for i := range want {
			want[i] = int32(i)
		}
		sort.SliceStable(want, func(a, b int) bool { return counts[want[a]] > counts[want[b]] })
		rows, share := popularity(counts, total)
		if !slices.Equal(rows, want) {
			t.Fatalf("n=%d: rows %v, want %v (counts %v)", n, rows, want, counts)
		}
		for i, row := range rows {
			if w := float32(counts[row]) / float32(total); share[i] != w {
				t.Fatalf("n=%d: share of row %d is %v, want %v", n, row, share[i], w)
			}
		}
	}
	if _, share := popularity([]int32{0, 0}, 0); !slices.Equal(share, []float32{0, 0}) {
		t.Errorf("shares without interactions: %v, want zeros", share)
	}
}
