// Command searchbench measures one-thread search speed and recall on a model
// version in a registry, typically one that `recserve bench serve -dir D`
// staged (D/registry, model "bench"), so index changes are measured on the
// same 1M-item graph the serving benchmark uses.
//
// It loads the version (with its prebuilt graph), searches the vectors of
// users spread over the whole user table, one goroutine on one locked
// thread, and reports the best of -reps passes in queries per CPU-second of
// that thread, then recall@k against exact search on -exact of the users.
//
//	go run ./bench/searchbench -registry /tmp/b1m/registry
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/registry"
)

func main() {
	root := flag.String("registry", "", "registry root")
	model := flag.String("model", "bench", "model")
	version := flag.String("version", "1", "version")
	queries := flag.Int("q", 20000, "searches per pass")
	reps := flag.Int("reps", 3, "passes; the best counts")
	k := flag.Int("k", 20, "results per search")
	ef := flag.Int("ef", 0, "efSearch (0: the graph's own)")
	exact := flag.Int("exact", 300, "users whose results are checked against exact search")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the timed passes to this file")
	flag.Parse()
	reg, err := registry.Open(*root)
	if err != nil {
		log.Fatal(err)
	}
	b, err := reg.Load(*model, *version)
	if err != nil {
		log.Fatal(err)
	}
	dim := b.Manifest.Dim
	h, err := index.LoadHNSW(b.Index, b.ItemVectors, dim)
	if err != nil {
		log.Fatal(err)
	}
	if *ef > 0 {
		h = h.WithEfSearch(*ef)
	}
	users := b.Manifest.Users
	user := func(i int) []float32 { // spread over the table
		u := i * 7919 % users
		return b.UserVectors[u*dim : (u+1)*dim]
	}
	runtime.LockOSThread()
	runtime.GC()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	best := 0.0
	for range *reps {
		start := threadCPU()
		for i := range *queries {
			h.Search(user(i), *k, nil)
		}
		best = max(best, float64(*queries)/(threadCPU()-start).Seconds())
	}
	pprof.StopCPUProfile()
	ex, err := index.Build(b.ItemVectors, dim, index.Options{Kind: index.KindExact})
	if err != nil {
		log.Fatal(err)
	}
	found := 0
	for i := range *exact {
		want := map[int32]bool{}
		for _, r := range ex.Search(user(i*104729), *k, nil) {
			want[r.ID] = true
		}
		for _, r := range h.Search(user(i*104729), *k, nil) {
			if want[r.ID] {
				found++
			}
		}
	}
	fmt.Printf("%d items, dim %d, k %d: %.0f queries per CPU-second (best of %d x %d), recall@%d %.4f (%d users)\n",
		h.Len(), dim, *k, best, *reps, *queries, *k, float64(found)/float64(*exact**k), *exact)
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
