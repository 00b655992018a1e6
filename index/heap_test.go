package index

import (
	"cmp"
	"math"
	"math/rand"
	"slices"
	"testing"
)

func randomCandidates(rng *rand.Rand, n int) []candidate {
	cs := make([]candidate, n)
	for i := range cs {
		// Few distinct distances, so ties by id are exercised.
		cs[i] = newCandidate(float32(rng.Intn(10)-5)/4, int32(rng.Intn(1000)))
	}
	return cs
}

// cmpCandidates orders by distance, then id, from the unpacked fields.
func cmpCandidates(a, b candidate) int {
	return cmp.Or(cmp.Compare(a.dist(), b.dist()), cmp.Compare(a.id(), b.id()))
}

// TestCandidatePacking checks that a candidate gives back its distance and
// id, and that comparing packed candidates orders them by distance, ties by
// lower id, over negative, positive, tiny and infinite distances.
func TestCandidatePacking(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	dists := []float32{0, -1, 1, 0.5, -0.5, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		math.MaxFloat32, -math.MaxFloat32, float32(math.Inf(1)), float32(math.Inf(-1))}
	for range 200 {
		dists = append(dists, float32(rng.NormFloat64()*10))
	}
	ids := []int32{0, 1, 7, math.MaxInt32}
	var cs []candidate
	for _, d := range dists {
		for _, id := range ids {
			c := newCandidate(d, id)
			if c.dist() != d || c.id() != id {
				t.Fatalf("newCandidate(%v, %d) unpacks to %v, %d", d, id, c.dist(), c.id())
			}
			cs = append(cs, c)
		}
	}
	for _, a := range cs {
		for _, b := range cs {
			want := a.dist() < b.dist() || (a.dist() == b.dist() && a.id() < b.id())
			if got := a < b; got != want {
				t.Fatalf("(%v, %d) < (%v, %d) = %v, want %v", a.dist(), a.id(), b.dist(), b.id(), got, want)
			}
		}
	}
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
		} else if c < far[0] {
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
