package index

import (
	"slices"
	"sync"
	"testing"
)

// checkGraph verifies the structural invariants of a built graph.
func checkGraph(t *testing.T, h *HNSW) {
	t.Helper()
	if got := int(h.levels[h.entry]); got != h.topLevel {
		t.Fatalf("entry %d has level %d, want top level %d", h.entry, got, h.topLevel)
	}
	empty := 0
	for id := range int32(h.n) {
		lvl := int(h.levels[id])
		if lvl > h.topLevel {
			t.Fatalf("node %d level %d above top level %d", id, lvl, h.topLevel)
		}
		for l := 0; l <= lvl; l++ {
			blk := h.block(id, l)
			if int(blk[0]) > h.maxLinks(l) {
				t.Fatalf("node %d layer %d: %d links > %d", id, l, blk[0], h.maxLinks(l))
			}
			nbs := h.neighbors(id, l)
			if l == 0 && len(nbs) == 0 {
				empty++
			}
			for i, nb := range nbs {
				switch {
				case nb == id:
					t.Fatalf("node %d layer %d links to itself", id, l)
				case nb < 0 || int(nb) >= h.n:
					t.Fatalf("node %d layer %d: link %d out of range", id, l, nb)
				case int(h.levels[nb]) < l:
					t.Fatalf("node %d layer %d links to %d of level %d", id, l, nb, h.levels[nb])
				case slices.Contains(nbs[:i], nb):
					t.Fatalf("node %d layer %d: duplicate link %d", id, l, nb)
				}
			}
		}
	}
	if h.n > 1 && empty > 0 {
		t.Errorf("%d nodes have no layer-0 links", empty)
	}
}

func TestHNSWGraphInvariants(t *testing.T) {
	d := mixture(7, 2000, 0, 16, 20, 1.0, true)
	for _, workers := range []int{1, 2, 4} {
		h, err := NewHNSW(d.vecs, d.dim, Options{M: 8, EfConstruction: 64, Workers: workers, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		checkGraph(t, h)
	}
}

func TestHNSWDeterministicWithOneWorker(t *testing.T) {
	d := mixture(8, 1500, 0, 16, 20, 1.0, false)
	opts := Options{M: 8, EfConstruction: 64, Workers: 1, Seed: 11}
	a, err := NewHNSW(d.vecs, d.dim, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewHNSW(d.vecs, d.dim, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.levels, b.levels) || !slices.Equal(a.links0, b.links0) ||
		!slices.Equal(a.upper, b.upper) || a.entry != b.entry {
		t.Error("two single-worker builds with the same seed differ")
	}
	opts.Seed++
	c, err := NewHNSW(d.vecs, d.dim, opts)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.levels, c.levels) {
		t.Error("different seeds drew the same levels")
	}
}

// TestHNSWFilteredGraphSearch exercises the filtered layer-0 search
// directly (Search would scan for these sizes), concurrently.
func TestHNSWFilteredGraphSearch(t *testing.T) {
	d := mixture(9, 3000, 100, 16, 30, 1.0, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, fraction := range []float64{0.5, 0.1, 0.03} {
		f := subset(int64(fraction*1000), d.n(), fraction)
		truth := truths(d, 10, f)
		wg.Go(func() {
			got := make([][]Result, len(d.queries))
			for i, q := range d.queries {
				got[i] = h.searchGraph(q, 10, DefaultEfSearch, f)
				if err := validResults(d, q, got[i], f); err != nil {
					t.Errorf("fraction %v query %d: %v", fraction, i, err)
					return
				}
			}
			r := recallAt(got, truth)
			report(t, "hnsw filtered graph search (forced), %.0f%% allowed: recall@10 = %.4f", fraction*100, r)
			if r < 0.9 {
				t.Errorf("fraction %v: recall@10 = %.4f, want >= 0.9", fraction, r)
			}
		})
	}
	wg.Wait()
}

func TestHNSWSearchAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	d := mixture(10, 4000, 1, 16, 20, 1.0, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{EfSearch: 16})
	if err != nil {
		t.Fatal(err)
	}
	q := d.queries[0]
	h.Search(q, 10, nil) // warm the pool
	if got := testing.AllocsPerRun(100, func() { h.searchGraph(q, 10, 16, nil) }); got != 1 {
		t.Errorf("graph search: %v allocations per query, want 1", got)
	}
	if got := testing.AllocsPerRun(100, func() { h.Search(q, 10, nil) }); got != 1 {
		t.Errorf("Search: %v allocations per query, want 1", got)
	}
	e := NewExact(d.vecs, d.dim)
	if got := testing.AllocsPerRun(20, func() { e.Search(q, 10, nil) }); got != 1 {
		t.Errorf("Exact.Search: %v allocations per query, want 1", got)
	}
}

func TestAllowedFraction(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		f      Filter
		lo, hi float64
	}{
		{"all", 100000, func(int32) bool { return true }, 1, 1},
		{"none", 100000, func(int32) bool { return false }, 0, 0},
		{"even", 100000, func(id int32) bool { return id%2 == 0 }, 0.4, 0.6},
		{"every 100th", 100000, func(id int32) bool { return id%100 == 0 }, 0, 0.03},
		{"lower half", 100000, func(id int32) bool { return id < 50000 }, 0.45, 0.55},
		{"small n, exact count", 200, func(id int32) bool { return id < 20 }, 0.1, 0.1},
	}
	for _, tt := range tests {
		if got := allowedFraction(tt.f, tt.n, filterSample); got < tt.lo || got > tt.hi {
			t.Errorf("%s: allowedFraction = %v, want in [%v, %v]", tt.name, got, tt.lo, tt.hi)
		}
	}
}

func TestPreferScan(t *testing.T) {
	half := func(id int32) bool { return id%2 == 0 }
	rare := func(id int32) bool { return id%200 == 0 }
	tests := []struct {
		name string
		f    Filter
		n    int
		want bool
	}{
		{"small catalog", nil, 1000, true},
		{"large catalog", nil, 1000000, false},
		{"half of a large catalog", half, 1000000, false},
		{"0.5% of a large catalog", rare, 1000000, true},
		{"half of a small catalog", half, 2000, true},
	}
	for _, tt := range tests {
		if got, _ := preferScan(tt.f, tt.n, DefaultEfSearch); got != tt.want {
			t.Errorf("%s: preferScan = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A filter that allows most rows is decided on the quick sample; a selective
// one gets the whole sample.
func TestPreferScanSampleSize(t *testing.T) {
	for _, tt := range []struct {
		name  string
		allow func(int32) bool
		calls int
	}{
		{"99% allowed", func(id int32) bool { return id%100 != 99 }, quickSample},
		{"2% allowed", func(id int32) bool { return id%50 == 0 }, quickSample + filterSample},
	} {
		calls := 0
		f := func(id int32) bool { calls++; return tt.allow(id) }
		preferScan(f, 1000000, DefaultEfSearch)
		if calls != tt.calls {
			t.Errorf("%s: the filter was called %d times, want %d", tt.name, calls, tt.calls)
		}
	}
}
