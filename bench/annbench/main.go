// Command annbench compares the index package's HNSW with hnswlib on a
// generated catalog: a seeded Gaussian mixture of L2-normalized vectors.
//
// It writes the vectors, queries and exact top-k ground truth as .npy files
// to a temporary directory, builds our HNSW, sweeps efSearch measuring
// recall@k and queries per CPU-second (one goroutine, process CPU time from
// getrusage), then runs hnswlib_bench.py (embedded) with the same data and
// sweep, and hnswlib_bench.cc (embedded, compiled with g++ -O3
// -march=native against libhnswlib-dev), and prints one table. A backend
// whose interpreter, library or compiler is missing is reported as not
// measured.
//
//	go run ./bench/annbench -n 200000
//	go run ./bench/annbench -n 1000000 -efs 16,32,64
package main

import (
	"bufio"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recserve/recserve/index"
)

//go:embed hnswlib_bench.py
var hnswlibScript []byte

//go:embed native/hnswlib_bench.cc
var hnswlibCxx []byte

var (
	flagN        = flag.Int("n", 200000, "catalog size")
	flagDim      = flag.Int("dim", 64, "vector dimension")
	flagQueries  = flag.Int("queries", 1000, "number of queries")
	flagClusters = flag.Int("clusters", 1000, "Gaussian mixture clusters")
	flagSpread   = flag.Float64("spread", 1.0, "cluster spread (standard deviation around a N(0, I) centre)")
	flagSeed     = flag.Int64("seed", 42, "data seed")
	flagK        = flag.Int("k", 10, "neighbours per query")
	flagM        = flag.Int("m", 16, "HNSW M")
	flagEfC      = flag.Int("efc", 200, "HNSW efConstruction")
	flagWorkers  = flag.Int("workers", runtime.GOMAXPROCS(0), "build threads (both backends)")
	flagEfs      = flag.String("efs", "10,12,14,16,18,20,24,28,32,48,64,128", "efSearch sweep")
	flagReps     = flag.Int("reps", 5, "timed passes over the queries per ef; the fastest counts")
	flagTarget   = flag.Float64("target", 0.95, "recall@k at which the backends are compared")
	flagPython   = flag.String("python", "", "python interpreter with hnswlib (default: python3, then /usr/bin/python3)")
	flagNoLib    = flag.Bool("no-hnswlib", false, "skip hnswlib's Python module")
	flagCxx      = flag.String("cxx", "g++", "C++ compiler for hnswlib_bench.cc; empty skips hnswlib's C++ library")
	flagKeep     = flag.Bool("keep", false, "keep the temporary data directory")
)

// row is one line of the results table.
type row struct {
	Backend   string  `json:"backend"`
	Ef        int     `json:"ef"`
	Recall    float64 `json:"recall"`
	QPSCPU    float64 `json:"qps_cpu"`
	BuildS    float64 `json:"build_s"`
	BuildCPUS float64 `json:"build_cpu_s"`
	MemBytes  int64   `json:"mem_bytes"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("annbench: ")
	flag.Parse()
	efs, err := parseInts(*flagEfs)
	if err != nil {
		log.Fatalf("-efs: %v", err)
	}
	dir, err := os.MkdirTemp("", "annbench-")
	if err != nil {
		log.Fatal(err)
	}
	if *flagKeep {
		log.Printf("data in %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	n, dim, nq, k := *flagN, *flagDim, *flagQueries, *flagK
	log.Printf("%d x %d vectors, %d clusters, %d queries, k = %d, GOMAXPROCS %d", n, dim, *flagClusters, nq, k, runtime.GOMAXPROCS(0))

	t0 := time.Now()
	vecs, queries := mixture(*flagSeed, n, nq, dim, *flagClusters, *flagSpread)
	truth := groundTruth(vecs, queries, dim, k)
	log.Printf("data and exact ground truth: %.1f s", time.Since(t0).Seconds())
	if err := writeData(dir, vecs, queries, truth, n, dim, nq, k); err != nil {
		log.Fatal(err)
	}

	rows, h := ours(vecs, queries, truth, dim, k, efs)
	saveLoad(dir, h, vecs, queries, dim, k)
	h = nil
	runtime.GC()

	if !*flagNoLib {
		lib, err := hnswlibPython(dir, efs)
		if err != nil {
			log.Printf("hnswlib (Python) not measured: %v", err)
		}
		rows = append(rows, lib...)
	}
	if *flagCxx != "" {
		lib, err := hnswlibNative(dir, efs)
		if err != nil {
			log.Printf("hnswlib (C++) not measured: %v", err)
		}
		rows = append(rows, lib...)
	}
	printTable(rows)
}

// ours builds our HNSW, measures its memory and sweeps efSearch.
func ours(vecs, queries []float32, truth [][]int32, dim, k int, efs []int) ([]row, *index.HNSW) {
	heap0 := heapInUse()
	wall0, cpu0 := time.Now(), cpuTime()
	h, err := index.NewHNSW(vecs, dim, index.Options{M: *flagM, EfConstruction: *flagEfC, Workers: *flagWorkers, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	buildS, buildCPU := time.Since(wall0).Seconds(), (cpuTime() - cpu0).Seconds()
	graph := heapInUse() - heap0
	raw := int64(len(vecs)) * 4
	rss, peak := procStatus("VmRSS"), procStatus("VmHWM")
	log.Printf("ours: build %.1f s wall, %.1f s CPU; graph %.1f MiB + vectors %.1f MiB = %.2fx raw; process RSS %.0f MiB, peak %.0f MiB",
		buildS, buildCPU, mib(graph), mib(raw), float64(graph+raw)/float64(raw), mib(rss), mib(peak))

	nq := len(queries) / dim
	var rows []row
	for _, ef := range efs {
		idx := h.WithEfSearch(ef)
		var hits int
		for i := range nq {
			hits += overlap(idx.Search(queries[i*dim:(i+1)*dim], k, nil), truth[i])
		}
		best := math.Inf(1)
		for range *flagReps {
			c0 := cpuTime()
			for i := range nq {
				idx.Search(queries[i*dim:(i+1)*dim], k, nil)
			}
			best = min(best, (cpuTime() - c0).Seconds())
		}
		rows = append(rows, row{Backend: "ours", Ef: ef, Recall: float64(hits) / float64(k*nq),
			QPSCPU: float64(nq) / best, BuildS: buildS, BuildCPUS: buildCPU, MemBytes: graph + raw})
	}
	return rows, h
}

// saveLoad saves the graph to a file, loads it back, compares the times
// with the build and checks that the loaded graph answers identically.
func saveLoad(dir string, h *index.HNSW, vecs, queries []float32, dim, k int) {
	path := filepath.Join(dir, "graph.hnsw")
	t0 := time.Now()
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	size, err := h.WriteTo(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		log.Fatal(err)
	}
	saveS := time.Since(t0).Seconds()

	t0 = time.Now()
	f, err = os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	g, err := index.ReadHNSW(f, vecs, dim)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	loadS := time.Since(t0).Seconds()

	same := 0
	nq := len(queries) / dim
	for i := range nq {
		q := queries[i*dim : (i+1)*dim]
		if slices.Equal(h.Search(q, k, nil), g.Search(q, k, nil)) {
			same++
		}
	}
	log.Printf("ours: saved %.1f MiB in %.2f s, loaded in %.2f s; %d of %d queries identical after loading", mib(size), saveS, loadS, same, nq)
}

// hnswlibPython runs the embedded Python script; it fails if no
// interpreter imports hnswlib.
func hnswlibPython(dir string, efs []int) ([]row, error) {
	py := *flagPython
	if py == "" {
		for _, cand := range []string{"python3", "/usr/bin/python3"} {
			if exec.Command(cand, "-c", "import hnswlib, numpy").Run() == nil {
				py = cand
				break
			}
		}
		if py == "" {
			return nil, fmt.Errorf("no python3 can import hnswlib and numpy (apt-get install -y python3-hnswlib)")
		}
	}
	script := filepath.Join(dir, "hnswlib_bench.py")
	if err := os.WriteFile(script, hnswlibScript, 0o644); err != nil {
		return nil, err
	}
	return runBackend(exec.Command(py, script), dir, efs)
}

// hnswlibNative compiles the embedded C++ program against libhnswlib-dev
// with -O3 -march=native and runs it.
func hnswlibNative(dir string, efs []int) ([]row, error) {
	src, bin := filepath.Join(dir, "hnswlib_bench.cc"), filepath.Join(dir, "hnswlib_bench")
	if err := os.WriteFile(src, hnswlibCxx, 0o644); err != nil {
		return nil, err
	}
	cc := exec.Command(*flagCxx, "-O3", "-march=native", "-std=c++17", "-pthread", "-o", bin, src)
	if out, err := cc.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compiling (apt-get install -y libhnswlib-dev g++?): %v\n%s", err, out)
	}
	return runBackend(exec.Command(bin), dir, efs)
}

// runBackend runs cmd with the common arguments and parses its JSON lines.
func runBackend(cmd *exec.Cmd, dir string, efs []int) ([]row, error) {
	efStrs := make([]string, len(efs))
	for i, ef := range efs {
		efStrs[i] = strconv.Itoa(ef)
	}
	cmd.Args = append(cmd.Args, dir, strconv.Itoa(*flagM), strconv.Itoa(*flagEfC),
		strconv.Itoa(*flagWorkers), strconv.Itoa(*flagK), strconv.Itoa(*flagReps), strings.Join(efStrs, ","))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Path, err)
	}
	var rows []row
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r row
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return rows, fmt.Errorf("parsing %q: %w", line, err)
		}
		rows = append(rows, r)
	}
	if len(rows) > 0 {
		log.Printf("%s: build %.1f s wall, %.1f s CPU; index %.1f MiB (RSS growth)", rows[0].Backend, rows[0].BuildS, rows[0].BuildCPUS, mib(rows[0].MemBytes))
	}
	return rows, nil
}

// printTable prints rows as Markdown and compares the backends at the
// target recall.
func printTable(rows []row) {
	fmt.Printf("| backend | efSearch | recall@%d | q/CPU-s | build s (CPU s) | memory MiB |\n", *flagK)
	fmt.Println("|---|---|---|---|---|---|")
	best := map[string]row{} // fastest row at or above the target recall
	var order []string
	for _, r := range rows {
		fmt.Printf("| %s | %d | %.4f | %.0f | %.1f (%.1f) | %.0f |\n", r.Backend, r.Ef, r.Recall, r.QPSCPU, r.BuildS, r.BuildCPUS, mib(r.MemBytes))
		if len(order) == 0 || order[len(order)-1] != r.Backend {
			order = append(order, r.Backend)
		}
		if r.Recall >= *flagTarget && r.QPSCPU > best[r.Backend].QPSCPU {
			best[r.Backend] = r
		}
	}
	fmt.Println()
	for _, name := range order {
		if b, ok := best[name]; ok {
			fmt.Printf("%s at recall@%d >= %.2f: %.0f q/CPU-s (ef %d, recall %.4f)\n", name, *flagK, *flagTarget, b.QPSCPU, b.Ef, b.Recall)
		} else {
			fmt.Printf("%s: no efSearch reached recall@%d %.2f\n", name, *flagK, *flagTarget)
		}
	}
	ours, ok := best["ours"]
	for _, name := range order {
		if b, okB := best[name]; ok && okB && name != "ours" {
			fmt.Printf("ratio ours / %s: %.2f\n", name, ours.QPSCPU/b.QPSCPU)
		}
	}
}

// mixture draws n vectors and nq queries from a Gaussian mixture: centres
// ~ N(0, I), points = centre + spread*N(0, I), each row L2-normalized.
func mixture(seed int64, n, nq, dim, clusters int, spread float64) (vecs, queries []float32) {
	rng := rand.New(rand.NewSource(seed))
	centres := make([]float64, clusters*dim)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	tmp := make([]float64, dim)
	fill := func(m []float32) {
		for off := 0; off < len(m); off += dim {
			c := centres[rng.Intn(clusters)*dim:][:dim]
			var norm float64
			for j := range tmp {
				tmp[j] = c[j] + spread*rng.NormFloat64()
				norm += tmp[j] * tmp[j]
			}
			norm = math.Sqrt(norm)
			for j := range tmp {
				m[off+j] = float32(tmp[j] / norm)
			}
		}
	}
	vecs, queries = make([]float32, n*dim), make([]float32, nq*dim)
	fill(vecs)
	fill(queries)
	return vecs, queries
}

// groundTruth returns the exact top-k IDs of every query, using all cores.
func groundTruth(vecs, queries []float32, dim, k int) [][]int32 {
	ex := index.NewExact(vecs, dim)
	nq := len(queries) / dim
	truth := make([][]int32, nq)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < nq; i += workers {
				for _, r := range ex.Search(queries[i*dim:(i+1)*dim], k, nil) {
					truth[i] = append(truth[i], r.ID)
				}
			}
		})
	}
	wg.Wait()
	return truth
}

// overlap counts the results whose ID is in truth.
func overlap(res []index.Result, truth []int32) int {
	hits := 0
	for _, r := range res {
		for _, t := range truth {
			if r.ID == t {
				hits++
				break
			}
		}
	}
	return hits
}

// writeData writes base.npy, queries.npy and truth.npy to dir.
func writeData(dir string, vecs, queries []float32, truth [][]int32, n, dim, nq, k int) error {
	if err := writeNpy(filepath.Join(dir, "base.npy"), "<f4", n, dim, func(i int) uint32 { return math.Float32bits(vecs[i]) }); err != nil {
		return err
	}
	if err := writeNpy(filepath.Join(dir, "queries.npy"), "<f4", nq, dim, func(i int) uint32 { return math.Float32bits(queries[i]) }); err != nil {
		return err
	}
	return writeNpy(filepath.Join(dir, "truth.npy"), "<i4", nq, k, func(i int) uint32 {
		if j := i % k; j < len(truth[i/k]) {
			return uint32(truth[i/k][j])
		}
		return math.MaxUint32 // -1: fewer than k rows
	})
}

// writeNpy writes a rows x cols matrix of 4-byte little-endian elements,
// element i given by at(i), in NumPy's .npy format (version 1.0).
func writeNpy(path, descr string, rows, cols int, at func(i int) uint32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	hdr := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }", descr, rows, cols)
	// Magic (6) + version (2) + length (2) + header + '\n', padded to 64.
	pad := 63 - (10+len(hdr))%64
	hdr += strings.Repeat(" ", pad) + "\n"
	w.WriteString("\x93NUMPY\x01\x00")
	binary.Write(w, binary.LittleEndian, uint16(len(hdr)))
	w.WriteString(hdr)
	var b [4]byte
	for i := range rows * cols {
		binary.LittleEndian.PutUint32(b[:], at(i))
		w.Write(b[:])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// cpuTime returns the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// procStatus returns a kB field of /proc/self/status in bytes, or 0.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad value %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}
