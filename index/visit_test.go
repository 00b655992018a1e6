package index

import (
	"math/rand/v2"
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
