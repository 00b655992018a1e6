package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// referenceEvaluate is the plain form of the protocol: score every item in
// float64, set train items to −∞, sort, take k.
func referenceEvaluate(m *Model, train, test *Dataset, k int) Metrics {
	out := Metrics{K: k}
	for u := range test.NumUsers() {
		truth := test.UserItems(u)
		if len(truth) == 0 {
			continue
		}
		out.Users++
		if u >= m.NumUsers() {
			continue
		}
		type cand struct {
			s    float64
			item int32
		}
		var all []cand
		for i := range m.NumItems() {
			var s float64
			for d := range m.Dim {
				s += float64(m.User(u)[d]) * float64(m.Item(i)[d])
			}
			if _, seen := slices.BinarySearch(train.UserItems(u), int32(i)); seen {
				s = math.Inf(-1)
			}
			all = append(all, cand{s, int32(i)})
		}
		sort.SliceStable(all, func(a, b int) bool { return all[a].s > all[b].s })
		var hits, dcg, idcg float64
		for rank, c := range all[:min(k, len(all))] {
			if _, ok := slices.BinarySearch(truth, c.item); ok && !math.IsInf(c.s, -1) {
				hits++
				dcg += 1 / math.Log2(float64(rank+2))
			}
		}
		for i := range min(k, len(truth)) {
			idcg += 1 / math.Log2(float64(i+2))
		}
		out.RecallAtK += hits / float64(len(truth))
		out.NDCGAtK += dcg / idcg
	}
	if out.Users > 0 {
		out.RecallAtK /= float64(out.Users)
		out.NDCGAtK /= float64(out.Users)
	}
	return out
}

func TestEvaluateHandComputed(t *testing.T) {
	// One dimension: item i scores user u as user·item.
	train := NewDataset()
	train.Add("a", "i0", 1) // masked for a
	train.Add("b", "i4", 1)
	train.Add("c", "i1", 1)
	for _, it := range []string{"i2", "i3"} {
		train.AddItem(it)
	}
	train.Add("d", "i3", 1)
	// Item rows: i0=0, i4=1, i1=2, i2=3, i3=4. Scores descending by row
	// name: i0 5, i1 4, i2 3, i3 2, i4 1.
	m := &Model{Dim: 1, UserVectors: []float32{1, 1, 1, 1}, ItemVectors: []float32{5, 1, 4, 3, 2}}
	test := NewHeldOut(train)
	// a: ranking after masking i0 is i1, i2, i3, i4. Test {i1, i4, i2},
	// k=2: hits i1@1, i2@2: recall 2/3 (denominator 3, not min(k,3)=2),
	// ndcg (1 + 1/log2 3) / (1 + 1/log2 3) = 1.
	test.Add("a", "i1", 1)
	test.Add("a", "i4", 1)
	test.Add("a", "i2", 1)
	// b: ranking i0, i1, ... Test {i1}: hit at rank 2: recall 1,
	// ndcg (1/log2 3) / 1.
	test.Add("b", "i1", 1)
	// c: ranking i0, i2 (i1 masked). Test {i3}: recall 0, ndcg 0.
	test.Add("c", "i3", 1)
	// d has no test items: not evaluated.
	// e is new (no vector): evaluated with no hits.
	test.Add("e", "i0", 1)
	// A test item unknown to the model counts in the denominator: b gets
	// a second test item below, see the second case.
	const k = 2
	got := Evaluate(m, train, test, k)
	l3 := 1 / math.Log2(3)
	want := Metrics{
		RecallAtK: (2.0/3 + 1 + 0 + 0) / 4,
		NDCGAtK:   (1 + l3 + 0 + 0) / 4,
		K:         k,
		Users:     4,
	}
	if !closeMetrics(got, want) {
		t.Fatalf("Evaluate = %+v, want %+v", got, want)
	}
	if ref := referenceEvaluate(m, train, test, k); !closeMetrics(ref, want) {
		t.Fatalf("reference = %+v, want %+v", ref, want)
	}

	// An item that only the test set knows: b's recall becomes 1/2 and
	// its IDCG covers min(k, 2) = 2 ranks.
	test.Add("b", "new-item", 1)
	got = Evaluate(m, train, test, k)
	want.RecallAtK = (2.0/3 + 0.5 + 0 + 0) / 4
	want.NDCGAtK = (1 + l3/(1+l3) + 0 + 0) / 4
	if !closeMetrics(got, want) {
		t.Fatalf("with unknown item: Evaluate = %+v, want %+v", got, want)
	}

	// k larger than the catalogue: everything unmasked is ranked.
	if got, want := Evaluate(m, train, test, 10), referenceEvaluate(m, train, test, 10); !closeMetrics(got, want) {
		t.Fatalf("k=10: Evaluate = %+v, reference %+v", got, want)
	}

	// No test items: nobody is evaluated.
	got = Evaluate(m, train, NewHeldOut(train), k)
	if got.Users != 0 || got.RecallAtK != 0 {
		t.Fatalf("empty test set: %+v", got)
	}
}

func TestEvaluateTiesLowerRowFirst(t *testing.T) {
	train := NewDataset()
	for _, it := range []string{"x", "y", "z"} {
		train.AddItem(it)
	}
	train.AddUser("u")
	m := &Model{Dim: 1, UserVectors: []float32{1}, ItemVectors: []float32{1, 2, 2}}
	test := NewHeldOut(train)
	test.Add("u", "z", 1)
	// y and z tie; y (lower row) takes the only slot.
	if got := Evaluate(m, train, test, 1); got.RecallAtK != 0 {
		t.Fatalf("tie broken towards the higher row: %+v", got)
	}
	test = NewHeldOut(train)
	test.Add("u", "y", 1)
	if got := Evaluate(m, train, test, 1); got.RecallAtK != 1 {
		t.Fatalf("tie not broken towards the lower row: %+v", got)
	}
}

func closeMetrics(a, b Metrics) bool {
	return a.K == b.K && a.Users == b.Users && math.Abs(a.RecallAtK-b.RecallAtK) < 1e-12 && math.Abs(a.NDCGAtK-b.NDCGAtK) < 1e-12
}

// Integer vectors make every score exact in float32 and float64, so the
// optimized evaluation (packed kernel, norm pruning, heaps, parallel
// blocks) must agree exactly with the reference, ties included.
func TestEvaluateMatchesReference(t *testing.T) {
	for _, tc := range []struct{ users, items, dim, k int }{
		{1, 1, 1, 1},
		{7, 10, 3, 5},
		{130, 301, 9, 20},
		{200, 1500, 17, 10},
		{70, 4000, 64, 20},
	} {
		t.Run(fmt.Sprintf("%dx%d/dim=%d", tc.users, tc.items, tc.dim), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.items), 7))
			train := randomDataset(rng, tc.users, tc.items, 30)
			test := NewHeldOut(train)
			for u := range tc.users {
				for range rng.IntN(8) {
					it := rng.IntN(tc.items)
					if _, seen := slices.BinarySearch(train.UserItems(u), int32(it)); !seen {
						test.Add(fmt.Sprint("u", u), fmt.Sprint("i", it), 1)
					}
				}
			}
			m := &Model{Dim: tc.dim, UserVectors: make([]float32, tc.users*tc.dim), ItemVectors: make([]float32, tc.items*tc.dim)}
			for i := range m.UserVectors {
				m.UserVectors[i] = float32(rng.IntN(7) - 2)
			}
			for i := range m.ItemVectors {
				// Varied norms exercise the pruning.
				m.ItemVectors[i] = float32(rng.IntN(1 + i/tc.dim%9))
			}
			want := referenceEvaluate(m, train, test, tc.k)
			if got := Evaluate(m, train, test, tc.k); !closeMetrics(got, want) {
				t.Fatalf("Evaluate = %+v, reference %+v", got, want)
			}
			// Chunks of 3 items: the pruning bound is checked after
			// every triple.
			if got := evaluate(m, train, test, tc.k, 1); !closeMetrics(got, want) {
				t.Fatalf("evaluate with tiny chunks = %+v, reference %+v", got, want)
			}
		})
	}
}
