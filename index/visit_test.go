package index

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestVisitSet checks the set against a map through growth and resets.
func TestVisitSet(t *testing.T) {
	var v visitSet
	rng := rand.New(rand.NewPCG(1, 2))
	for round, n := range []int{10, 5000, 100, 20000} {
		v.reset()
		want := map[int32]bool{}
		for range n {
			id := rng.Int32N(int32(2 * n)) // about half the adds repeat an id
			if round == 3 {
				id = rng.Int32() // the whole int32 range, 0 and big ids included
			}
			v.reserve(1)
			if got := v.add(id); got != !want[id] {
				t.Fatalf("round %d: add(%d) = %v, want %v", round, id, got, !want[id])
			}
			want[id] = true
		}
		if v.n != len(want) || 2*v.n > len(v.slots) {
			t.Errorf("round %d: %d members in %d slots, want %d at most half full", round, v.n, len(v.slots), len(want))
		}
	}
	v.reset()
	v.reserve(3)
	if !v.add(0) || v.add(0) || !v.add(1<<31-1) {
		t.Error("after reset, 0 and the largest id are new once")
	}
}

// TestVisitSetAddNew checks addNew against a map: lists of distinct ids,
// about half of them seen before, through growth, collisions and resets.
func TestVisitSetAddNew(t *testing.T) {
	var v visitSet
	rng := rand.New(rand.NewPCG(3, 4))
	for round, lists := range []int{1, 50, 400} {
		v.reset()
		seen := map[int32]bool{}
		for range lists {
			list := map[int32]bool{}
			for len(list) < 32 {
				list[rng.Int32N(int32(32*lists))] = true
			}
			ids := make([]int32, 0, 32)
			for id := range list {
				ids = append(ids, id)
			}
			prefix := []int32{-7}
			out := v.addNew(ids, prefix)
			var want []int32
			for _, id := range ids {
				if !seen[id] {
					want = append(want, id)
					seen[id] = true
				}
			}
			if !slices.Equal(out[1:], want) || out[0] != -7 {
				t.Fatalf("round %d: addNew(%v) = %v, want [-7] and %v", round, ids, out, want)
			}
		}
		if v.n != len(seen) || 2*v.n > len(v.slots) {
			t.Errorf("round %d: %d members in %d slots, want %d at most half full", round, v.n, len(v.slots), len(seen))
		}
		for id := range seen {
			v.reserve(1)
			if v.add(id) {
				t.Fatalf("round %d: %d added by addNew is not in the set", round, id)
			}
		}
	}
}
