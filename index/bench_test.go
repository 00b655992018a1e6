package index

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Benchmark data: a Gaussian mixture like the acceptance suite's, sized by
// flags, e.g. go test -run '^$' -bench . ./index/ -index.n=200000.
var (
	benchN        = flag.Int("index.n", 20000, "benchmark catalog size")
	benchDim      = flag.Int("index.dim", 64, "benchmark vector dimension")
	benchClusters = flag.Int("index.clusters", 100, "benchmark mixture clusters")
	benchQueries  = flag.Int("index.queries", 1000, "benchmark queries")
	benchGraph    = flag.String("index.graph", "", "HNSW graph file: loaded if it matches the data, else built and saved")
)

// benchState caches the data and built indexes across benchmarks.
var benchState struct {
	once    sync.Once
	data    *dataset
	truth   [][]Result
	mu      sync.Mutex
	indexes map[Kind]Index
}

func benchData(b *testing.B) (*dataset, [][]Result) {
	b.Helper()
	benchState.once.Do(func() {
		benchState.data = mixture(42, *benchN, *benchQueries, *benchDim, *benchClusters, 1.0, false)
		benchState.truth = truths(benchState.data, 10, nil)
		benchState.indexes = map[Kind]Index{}
	})
	return benchState.data, benchState.truth
}

func benchIndex(b *testing.B, kind Kind) Index {
	b.Helper()
	d, _ := benchData(b)
	benchState.mu.Lock()
	defer benchState.mu.Unlock()
	if idx, ok := benchState.indexes[kind]; ok {
		return idx
	}
	var idx Index
	if kind == KindHNSW && *benchGraph != "" {
		idx = cachedGraph(b, d)
	} else {
		var err error
		if idx, err = Build(d.vecs, d.dim, Options{Kind: kind}); err != nil {
			b.Fatal(err)
		}
	}
	benchState.indexes[kind] = idx
	return idx
}

// cachedGraph loads the -index.graph file, or builds the default HNSW and
// saves it there if the file is missing or was built over other data.
func cachedGraph(b *testing.B, d *dataset) *HNSW {
	if f, err := os.Open(*benchGraph); err == nil {
		h, err := ReadHNSW(f, d.vecs, d.dim)
		f.Close()
		if err == nil {
			return h
		}
		b.Logf("rebuilding %s: %v", *benchGraph, err)
	}
	h, err := NewHNSW(d.vecs, d.dim, Options{})
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(*benchGraph)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := h.WriteTo(f); err != nil {
		b.Fatal(err)
	}
	return h
}

// benchSearch times single-threaded k=10 searches cycling through the
// queries and reports recall@10 over all queries.
func benchSearch(b *testing.B, idx Index, f Filter) {
	d, truth := benchData(b)
	if f != nil {
		truth = truths(d, 10, f)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		idx.Search(d.queries[i%len(d.queries)], 10, f)
		i++
	}
	b.ReportMetric(recallAt(searchAll(idx, d, 10, f), truth), "recall@10")
}

func BenchmarkSearch(b *testing.B) {
	for _, kind := range []Kind{KindExact, KindHNSW, KindCoder} {
		b.Run(string(kind), func(b *testing.B) { benchSearch(b, benchIndex(b, kind), nil) })
	}
}

// BenchmarkSearchEf sweeps HNSW's EfSearch on one graph.
func BenchmarkSearchEf(b *testing.B) {
	for _, ef := range []int{10, 16, 32, 64, 128} {
		b.Run(fmt.Sprintf("ef=%d", ef), func(b *testing.B) {
			benchSearch(b, benchIndex(b, KindHNSW).(*HNSW).WithEfSearch(ef), nil)
		})
	}
}

func BenchmarkSearchFiltered(b *testing.B) {
	for _, fraction := range []float64{0.5, 0.1, 0.01} {
		for _, kind := range []Kind{KindExact, KindHNSW, KindCoder} {
			b.Run(fmt.Sprintf("allowed=%g/%s", fraction, kind), func(b *testing.B) {
				benchSearch(b, benchIndex(b, kind), subset(7, *benchN, fraction))
			})
		}
	}
}

// BenchmarkSearchParallel measures throughput with GOMAXPROCS searchers.
func BenchmarkSearchParallel(b *testing.B) {
	for _, kind := range []Kind{KindHNSW, KindCoder} {
		b.Run(string(kind), func(b *testing.B) {
			idx := benchIndex(b, kind)
			d, _ := benchData(b)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					idx.Search(d.queries[i%len(d.queries)], 10, nil)
					i++
				}
			})
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	d, _ := benchData(b)
	for _, kind := range []Kind{KindHNSW, KindCoder} {
		b.Run(string(kind), func(b *testing.B) {
			for b.Loop() {
				if _, err := Build(d.vecs, d.dim, Options{Kind: kind}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDot(b *testing.B) {
	for _, dim := range []int{32, 64, 128} {
		b.Run(fmt.Sprintf("dim=%d", dim), func(b *testing.B) {
			x, y := make([]float32, dim), make([]float32, dim)
			for i := range x {
				x[i], y[i] = float32(i), float32(dim-i)
			}
			var s float32
			for b.Loop() {
				s += Dot(x, y)
			}
			_ = s
		})
	}
}

// BenchmarkSaveLoad times writing the HNSW graph to memory and reading it
// back with all checks; compare with BenchmarkBuild.
func BenchmarkSaveLoad(b *testing.B) {
	d, _ := benchData(b)
	h := benchIndex(b, KindHNSW).(*HNSW)
	var buf bytes.Buffer
	if _, err := h.WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	b.Run("save", func(b *testing.B) {
		for b.Loop() {
			buf.Reset()
			if _, err := h.WriteTo(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(buf.Len()))
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := ReadHNSW(bytes.NewReader(buf.Bytes()), d.vecs, d.dim); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(buf.Len()))
	})
}
