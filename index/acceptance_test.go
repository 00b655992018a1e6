package index

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// The acceptance suite runs the same subtests against every backend on two
// datasets: L2-normalized clustered vectors (a Gaussian mixture of 100
// clusters in 32 dimensions), and the same kind of data with row norms
// varying from 0.5x to 2x (as ALS embeddings do). Recall is measured
// against an independent brute-force reference over 500 queries, at
// default Options.

// suiteN is the catalog size: 10k rows, 5k under the race detector.
var suiteN = map[bool]int{false: 10000, true: 5000}[raceEnabled]

const (
	suiteDim      = 32
	suiteClusters = 100
	suiteSpread   = 1.0
	suiteQueries  = 500
	suiteK        = 10
)

// backendCase is one backend and what the suite asserts about it. A zero
// minimum recall means the recall is only reported.
type backendCase struct {
	kind        Kind
	label       string  // in reports
	minRecall   float64 // unfiltered recall@10
	minFiltered float64 // recall@10 under the 50% and 10% filters
	exact       bool    // 1%-filter results must equal the reference exactly
	determinist bool    // concurrent results must equal sequential ones
}

var backendCases = []backendCase{
	{kind: KindExact, label: "exact", minRecall: 1, minFiltered: 1, exact: true, determinist: true},
	{kind: KindHNSW, label: "hnsw", minRecall: 0.95, minFiltered: 0.9, exact: true, determinist: true},
	{kind: KindCoder, label: "coder/hnsw"}, // recall is reported, not asserted
}

// suiteData is a dataset with filters and reference results.
type suiteData struct {
	*dataset
	filters map[string]Filter     // by name: "50%", "10%", "1%"
	truth   map[string][][]Result // by filter name; "" is unfiltered
}

var filterFractions = []struct {
	name     string
	fraction float64
}{{"50%", 0.5}, {"10%", 0.1}, {"1%", 0.01}}

func newSuiteData(seed int64, normScale bool) *suiteData {
	d := mixture(seed, suiteN, suiteQueries, suiteDim, suiteClusters, suiteSpread, normScale)
	s := &suiteData{
		dataset: d,
		filters: map[string]Filter{},
		truth:   map[string][][]Result{"": truths(d, suiteK, nil)},
	}
	for i, ff := range filterFractions {
		f := subset(seed+int64(i)+1, d.n(), ff.fraction)
		s.filters[ff.name] = f
		s.truth[ff.name] = truths(d, suiteK, f)
	}
	return s
}

func TestAcceptance(t *testing.T) {
	for _, ds := range []struct {
		name      string
		seed      int64
		normScale bool
	}{{"normalized", 1, false}, {"norms0.5-2x", 2, true}} {
		t.Run(ds.name, func(t *testing.T) {
			t.Parallel()
			data := newSuiteData(ds.seed, ds.normScale)
			for _, bc := range backendCases {
				t.Run(string(bc.kind), func(t *testing.T) {
					idx, err := Build(data.vecs, data.dim, Options{Kind: bc.kind})
					if err != nil {
						t.Fatal(err)
					}
					runSuite(t, idx, data, bc)
				})
			}
		})
	}
}

func runSuite(t *testing.T, idx Index, data *suiteData, bc backendCase) {
	n := data.n()
	if idx.Len() != n {
		t.Fatalf("Len() = %d, want %d", idx.Len(), n)
	}

	t.Run("Recall", func(t *testing.T) {
		r := recallAt(searchAll(idx, data.dataset, suiteK, nil), data.truth[""])
		report(t, "%s recall@10 = %.4f (n %d, EfSearch %d, %d queries)", bc.label, r, n, DefaultEfSearch, len(data.queries))
		if r < bc.minRecall {
			t.Errorf("recall@10 = %.4f, want >= %.2f", r, bc.minRecall)
		}
	})

	t.Run("SortedAndScored", func(t *testing.T) {
		for _, q := range data.queries[:100] {
			got := idx.Search(q, suiteK, nil)
			if len(got) != suiteK {
				t.Fatalf("got %d results, want %d", len(got), suiteK)
			}
			checkResults(t, data.dataset, q, got, nil)
		}
	})

	t.Run("KLargerThanN", func(t *testing.T) {
		for _, k := range []int{n, n + 7} {
			got := idx.Search(data.queries[0], k, nil)
			if len(got) != n {
				t.Fatalf("k = %d: got %d results, want n = %d", k, len(got), n)
			}
			checkResults(t, data.dataset, data.queries[0], got, nil)
		}
	})

	t.Run("KNonPositive", func(t *testing.T) {
		for _, k := range []int{0, -1} {
			if got := idx.Search(data.queries[0], k, nil); len(got) != 0 {
				t.Errorf("k = %d: got %d results, want none", k, len(got))
			}
		}
	})

	t.Run("WrongDim", func(t *testing.T) {
		if got := idx.Search(data.queries[0][:data.dim-1], suiteK, nil); got != nil {
			t.Errorf("got %d results for a short query, want nil", len(got))
		}
	})

	t.Run("Filter1Percent", func(t *testing.T) {
		f := data.filters["1%"]
		for i, q := range data.queries {
			got := idx.Search(q, suiteK, f)
			if len(got) != suiteK {
				t.Fatalf("query %d: got %d results, want %d", i, len(got), suiteK)
			}
			checkResults(t, data.dataset, q, got, f)
			if bc.exact && !slices.Equal(got, data.truth["1%"][i]) {
				t.Fatalf("query %d: got %v, want exact filtered top-10 %v", i, got, data.truth["1%"][i])
			}
		}
	})

	for _, name := range []string{"50%", "10%"} {
		t.Run("Filter"+name[:len(name)-1]+"Percent", func(t *testing.T) {
			f := data.filters[name]
			got := searchAll(idx, data.dataset, suiteK, f)
			for i, res := range got {
				if len(res) != suiteK {
					t.Fatalf("query %d: got %d results, want %d", i, len(res), suiteK)
				}
				checkResults(t, data.dataset, data.queries[i], res, f)
			}
			r := recallAt(got, data.truth[name])
			path := "graph search"
			if useScan, _ := preferScan(f, n, DefaultEfSearch); useScan || bc.kind == KindExact {
				path = "exact scan"
			}
			report(t, "%s recall@10 with a %s filter = %.4f (%s)", bc.label, name, r, path)
			if r < bc.minFiltered {
				t.Errorf("recall@10 = %.4f, want >= %.2f", r, bc.minFiltered)
			}
		})
	}

	t.Run("FilterFewerThanK", func(t *testing.T) {
		allowed := []int32{3, int32(n / 2), int32(n - 1)}
		f := func(id int32) bool { return slices.Contains(allowed, id) }
		got := idx.Search(data.queries[0], suiteK, f)
		want := bruteTopK(data.vecs, data.dim, data.queries[0], suiteK, f)
		if !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		filters := []Filter{nil, data.filters["50%"], data.filters["1%"]}
		queries := data.queries[:60]
		want := make([][]Result, len(queries))
		for i, q := range queries {
			want[i] = idx.Search(q, suiteK, filters[i%len(filters)])
		}
		const goroutines = 4
		errs := make(chan error, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for j := range queries {
					i := (j + g*len(queries)/goroutines) % len(queries)
					f := filters[i%len(filters)]
					got := idx.Search(queries[i], suiteK, f)
					if err := validResults(data.dataset, queries[i], got, f); err != nil {
						errs <- fmt.Errorf("query %d: %w", i, err)
						return
					}
					if len(got) != suiteK || (bc.determinist && !slices.Equal(got, want[i])) {
						errs <- fmt.Errorf("query %d: concurrent result %v differs from sequential %v", i, got, want[i])
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// checkResults fails t unless res is valid for q (see validResults).
func checkResults(t *testing.T, d *dataset, q []float32, res []Result, f Filter) {
	t.Helper()
	if err := validResults(d, q, res, f); err != nil {
		t.Fatal(err)
	}
}

// validResults checks that res holds distinct in-range allowed IDs, each
// scored with Dot, best first with ties by lower ID.
func validResults(d *dataset, q []float32, res []Result, f Filter) error {
	seen := make(map[int32]bool, len(res))
	for i, r := range res {
		if r.ID < 0 || int(r.ID) >= d.n() {
			return fmt.Errorf("result %d: ID %d out of range", i, r.ID)
		}
		if seen[r.ID] {
			return fmt.Errorf("result %d: duplicate ID %d", i, r.ID)
		}
		seen[r.ID] = true
		if f != nil && !f(r.ID) {
			return fmt.Errorf("result %d: ID %d not allowed by the filter", i, r.ID)
		}
		if want := Dot(q, d.vecs[int(r.ID)*d.dim:][:d.dim]); r.Score != want {
			return fmt.Errorf("result %d: ID %d score %v, want %v", i, r.ID, r.Score, want)
		}
		if i > 0 && worse(res[i-1], r) {
			return fmt.Errorf("results %d and %d out of order: %v, %v", i-1, i, res[i-1], r)
		}
	}
	return nil
}
