package rank

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// candidates returns n candidates with descending scores, item i in category i%cats.
func candidates(n, cats int) []Candidate {
	out := make([]Candidate, n)
	for i := range out {
		out[i] = Candidate{Row: int32(i), Score: float32(n - i), Category: int32(i % cats)}
	}
	return out
}

func rows(items []Item) []int32 {
	out := make([]int32, len(items))
	for i, it := range items {
		out[i] = it.Row
	}
	return out
}

func TestCategoryCap(t *testing.T) {
	// Categories cluster at the top: rows 0..9 are category 0.
	var cands []Candidate
	for i := range 40 {
		cands = append(cands, Candidate{Row: int32(i), Score: float32(40 - i), Category: int32(i / 10)})
	}
	got := Rank(Input{Candidates: cands}, 8, Config{MaxPerCategory: 2})
	if len(got) != 8 {
		t.Fatalf("got %d items, want 8", len(got))
	}
	per := map[int32]int{}
	for _, it := range got {
		if per[it.Category]++; per[it.Category] > 2 {
			t.Fatalf("more than 2 of category %d: %v", it.Category, rows(got))
		}
	}
	if want := []int32{0, 1, 10, 11, 20, 21, 30, 31}; !slices.Equal(rows(got), want) {
		t.Fatalf("got %v, want %v", rows(got), want)
	}
	// Only 4 categories: a cap of 1 leaves 4 items for n 8.
	if got := Rank(Input{Candidates: cands}, 8, Config{MaxPerCategory: 1}); len(got) != 4 {
		t.Fatalf("cap 1: %v, want 4 items", rows(got))
	}
}

func TestLambdaZeroIsRetrievalOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cands []Candidate
	vecs := map[int32][]float32{}
	for i := range 50 {
		cands = append(cands, Candidate{Row: int32(i), Score: float32(rng.IntN(10)), Category: 0})
		vecs[int32(i)] = []float32{float32(rng.NormFloat64()), float32(rng.NormFloat64())}
	}
	in := Input{Candidates: cands, Vector: func(r int32) []float32 { return vecs[r] }}
	got := Rank(in, 20, Config{DiversityLambda: 0})
	want := slices.Clone(cands)
	slices.SortStableFunc(want, func(a, b Candidate) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return int(a.Row - b.Row)
	})
	for i, it := range got {
		if it.Row != want[i].Row || it.Score != want[i].Score || it.Retrieval != want[i].Score || it.Placement != "" {
			t.Fatalf("position %d: %+v, want row %d score %v", i, it, want[i].Row, want[i].Score)
		}
	}
	if len(got) != 20 {
		t.Fatalf("%d items", len(got))
	}
}

func TestLambdaOnePicksDissimilar(t *testing.T) {
	// Two tight clusters (rows 0-2 near x, rows 3-4 near y) and one far item (row 5, z).
	vecs := [][]float32{
		{1, 0.01, 0}, {1, 0.02, 0}, {1, 0, 0.01},
		{0.01, 1, 0}, {0.02, 1, 0},
		{0, 0, 1},
	}
	cands := []Candidate{{0, 10, 0}, {1, 9, 0}, {2, 8, 0}, {3, 7, 0}, {4, 6, 0}, {5, 1, 0}}
	in := Input{Candidates: cands, Vector: func(r int32) []float32 { return vecs[r] }}
	plain := Rank(in, 3, Config{})
	if want := []int32{0, 1, 2}; !slices.Equal(rows(plain), want) {
		t.Fatalf("lambda 0: %v, want %v", rows(plain), want)
	}
	got := Rank(in, 3, Config{DiversityLambda: 1})
	if want := []int32{0, 5, 3}; !slices.Equal(rows(got), want) { // the far item is least like row 0
		t.Fatalf("lambda 1: %v, want one of each cluster and the far item %v", rows(got), want)
	}
	// A middle lambda still prefers the second cluster over the first's near duplicates.
	if got := rows(Rank(in, 2, Config{DiversityLambda: 0.5})); !slices.Equal(got, []int32{0, 3}) {
		t.Fatalf("lambda 0.5: %v, want [0 3]", got)
	}
}

func TestBoostMovesUp(t *testing.T) {
	cands := candidates(20, 4) // row 3 is category 3, fourth by score
	got := Rank(Input{Candidates: cands}, 5, Config{Boosts: []Boost{{Category: 3, Multiply: 2}}})
	if got[0].Row != 3 || got[0].Category != 3 {
		t.Fatalf("boosted category 3 not first: %v", rows(got))
	}
	if got[0].Retrieval != 17 || got[0].Score != 34 {
		t.Fatalf("scores %+v, want retrieval 17, final 34", got[0])
	}
	attrs := map[int32]string{15: "red"}
	in := Input{Candidates: cands, Attribute: func(r int32, name string) (string, bool) {
		v, ok := attrs[r]
		return v, ok && name == "color"
	}}
	got = Rank(in, 3, Config{Boosts: []Boost{{Category: AnyCategory, Attribute: "color", Value: "red", Multiply: 1, Add: 100}}})
	if got[0].Row != 15 {
		t.Fatalf("attribute boost: %v, want row 15 first", rows(got))
	}
	// A boost for another category or value changes nothing.
	got = Rank(in, 3, Config{Boosts: []Boost{{Category: NoCategory, Multiply: 1, Add: 100}, {Category: AnyCategory, Attribute: "color", Value: "blue", Multiply: 1, Add: 100}}})
	if !slices.Equal(rows(got), []int32{0, 1, 2}) {
		t.Fatalf("non-matching boosts: %v", rows(got))
	}
}

func TestPinnedAtPosition(t *testing.T) {
	cands := candidates(20, 4)
	// Row 7 is retrieved too: it appears once, at its pinned position; row 99 is not.
	cfg := Config{Pinned: []Pin{{Item: Candidate{Row: 7, Score: 13, Category: 3}, Position: 0}, {Item: Candidate{Row: 99, Score: 0.5}, Position: 3}}}
	got := Rank(Input{Candidates: cands}, 6, cfg)
	if want := []int32{7, 0, 1, 99, 2, 3}; !slices.Equal(rows(got), want) {
		t.Fatalf("got %v, want %v", rows(got), want)
	}
	if got[0].Placement != PlacementPinned || got[3].Placement != PlacementPinned || got[1].Placement != "" {
		t.Fatalf("placements %+v", got)
	}
	// A pin beyond the items there are still comes back, at the end.
	if got := Rank(Input{Candidates: cands[:2]}, 6, Config{Pinned: []Pin{{Item: Candidate{Row: 99}, Position: 5}}}); !slices.Equal(rows(got), []int32{0, 1, 99}) {
		t.Fatalf("short list: %v", rows(got))
	}
}

func TestExplorationSlots(t *testing.T) {
	for _, c := range []struct {
		share float64
		n     int
		want  int
	}{{0, 10, 0}, {0.1, 10, 1}, {0.01, 10, 1}, {0.5, 10, 5}, {0.1, 1, 0}, {0.5, 2, 1}, {0.25, 10, 3}} {
		if got := ExplorationSlots(c.share, c.n); got != c.want {
			t.Errorf("ExplorationSlots(%v, %d) = %d, want %d", c.share, c.n, got, c.want)
		}
	}
}

// TestExploration: the exploration slots go to under-exposed candidates, at
// the end of the list, and an item that gathered impressions stops getting them.
func TestExploration(t *testing.T) {
	cands := candidates(40, 1)
	imp := map[int32]int64{}
	clicks := map[int32]int64{}
	for r := range int32(40) {
		if r != 30 && r != 31 {
			imp[r] = 1000 // well exposed
		}
	}
	in := Input{Candidates: cands, Exposure: func(r int32) (int64, int64) { return imp[r], clicks[r] }}
	cfg := Config{ExplorationShare: 0.2, Rand: rand.New(rand.NewPCG(3, 4))}
	got := Rank(in, 10, cfg)
	if want := []int32{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(rows(got)[:8], want) {
		t.Fatalf("ranked part %v, want %v", rows(got), want)
	}
	ex := rows(got)[8:]
	slices.Sort(ex)
	if !slices.Equal(ex, []int32{30, 31}) || got[8].Placement != PlacementExploration || got[9].Placement != PlacementExploration {
		t.Fatalf("exploration %+v, want rows 30 and 31 labelled", got[8:])
	}
	// Row 30 gathers impressions and clicks: it stops being explored.
	imp[30], clicks[30] = 150, 40
	got = Rank(in, 10, cfg)
	if slices.Contains(rows(got), 30) || got[9].Row != 31 || got[9].Placement != PlacementExploration {
		t.Fatalf("after impressions: %+v", got)
	}
	if len(got) != 10 || got[8].Row != 8 || got[8].Placement != "" {
		t.Fatalf("a slot without an under-exposed item goes to the next ranked one: %v", rows(got))
	}
	// Thompson sampling: an under-exposed item with clicks wins more often than
	// one shown as often without any.
	for r := range int32(40) {
		imp[r] = 1000
	}
	imp[20], clicks[20] = 50, 25
	imp[21], clicks[21] = 50, 0
	wins := 0
	for range 200 {
		got := Rank(in, 2, Config{ExplorationShare: 0.5, Rand: cfg.Rand})
		if got[1].Row == 20 {
			wins++
		}
	}
	if wins < 190 {
		t.Fatalf("clicked item explored %d of 200 times", wins)
	}
}

func TestZeroConfigKeepsOrder(t *testing.T) {
	cands := candidates(10, 3)
	got := Rank(Input{Candidates: cands}, 4, Config{})
	if !slices.Equal(rows(got), []int32{0, 1, 2, 3}) {
		t.Fatalf("%v", rows(got))
	}
	var c Config
	if c.Active() {
		t.Fatal("zero config active")
	}
}

func TestBetaSampleMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var sum float64
	for range 20000 {
		sum += betaSample(rng, 3, 7)
	}
	if mean := sum / 20000; mean < 0.29 || mean > 0.31 {
		t.Fatalf("Beta(3,7) mean %v, want 0.3", mean)
	}
}
