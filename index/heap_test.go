package index

import (
	"math/rand"
	"slices"
	"testing"
)

func randomCandidates(rng *rand.Rand, n int) []candidate {
	cs := make([]candidate, n)
	for i := range cs {
		// Few distinct distances, so ties by id are exercised.
		cs[i] = candidate{dist: float32(rng.Intn(10)), id: int32(rng.Intn(1000))}
	}
	return cs
}

func cmpCandidates(a, b candidate) int {
	switch {
	case closer(a, b):
		return -1
	case closer(b, a):
		return 1
	}
	return 0
}

func TestNearAndFarHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := range 40 {
		cs := randomCandidates(rng, n)
		want := slices.Clone(cs)
		slices.SortFunc(want, cmpCandidates)

		var near nearHeap
		var far farHeap
		for _, c := range cs {
			near.push(c)
			far.push(c)
		}
		for i := range n {
			if got := near.pop(); got != want[i] {
				t.Fatalf("n=%d: nearHeap pop %d = %v, want %v", n, i, got, want[i])
			}
			if got := far.pop(); got != want[n-1-i] {
				t.Fatalf("n=%d: farHeap pop %d = %v, want %v", n, i, got, want[n-1-i])
			}
		}
	}
}

func TestFarHeapBoundedTopK(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	cs := randomCandidates(rng, 500)
	const k = 25
	var far farHeap
	for _, c := range cs { // as the searches keep their best k
		if len(far) < k {
			far.push(c)
		} else if closer(c, far[0]) {
			far.replaceTop(c)
		}
	}
	want := slices.Clone(cs)
	slices.SortFunc(want, cmpCandidates)
	got := make([]candidate, k)
	for i := k - 1; i >= 0; i-- {
		got[i] = far.pop()
	}
	if !slices.Equal(got, want[:k]) {
		t.Errorf("bounded far heap kept %v, want %v", got, want[:k])
	}
}

func TestResultHeap(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, tc := range []struct{ n, k int }{{0, 5}, {3, 5}, {5, 5}, {100, 1}, {100, 10}, {1000, 37}} {
		rs := make([]Result, tc.n)
		for i := range rs {
			rs[i] = Result{ID: int32(rng.Intn(50)), Score: float32(rng.Intn(8))}
		}
		h := make(resultHeap, 0, tc.k)
		for _, r := range rs {
			h.offer(r)
		}
		h.sortBestFirst()
		want := slices.Clone(rs)
		slices.SortFunc(want, func(a, b Result) int {
			switch {
			case worse(b, a):
				return -1
			case worse(a, b):
				return 1
			}
			return 0
		})
		want = want[:min(tc.k, tc.n)]
		if !slices.Equal([]Result(h), want) {
			t.Errorf("n=%d k=%d: got %v, want %v", tc.n, tc.k, h, want)
		}
	}
}
