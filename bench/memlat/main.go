// Command memlat measures how fast this machine reads rows at random from a
// large array, the access pattern of a graph search: independent chains of
// dependent reads (each read picks the next row), 1 to 16 chains at once,
// reading 1, 2 or 4 of each 256-byte row's cache lines. One chain shows the
// latency of a miss; many show how many misses overlap, and whether a row's
// extra lines cost extra time (BENCHMARKS.md, "1M serving, fourth session").
//
//	go run ./bench/memlat -mib 256
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"time"
)

func main() {
	mib := flag.Int("mib", 256, "array size in MiB")
	reads := flag.Int("reads", 1000000, "rows read per measurement")
	flag.Parse()
	rows := *mib << 20 / rowBytes
	mem := chains(rows)
	for _, k := range []int{1, 4, 16} {
		for _, lines := range []int{1, 2, 4} {
			fmt.Printf("%d MiB, %2d chains, %d lines per row: %5.1f ns per row\n", *mib, k, lines, chase(mem, rows, k, lines, *reads))
		}
	}
}

const (
	rowBytes = 256
	rowWords = rowBytes / 8
)

// chains links every row into one random cycle: word 0 of a row holds the
// index of the next row's first word.
func chains(rows int) []int64 {
	mem := make([]int64, rows*rowWords)
	perm := rand.New(rand.NewSource(1)).Perm(rows)
	for i, r := range perm {
		mem[r*rowWords] = int64(perm[(i+1)%rows] * rowWords)
	}
	return mem
}

// chase follows k chains from evenly spaced starts, reading lines cache lines
// of each row, and returns the time per row read.
func chase(mem []int64, rows, k, lines, reads int) float64 {
	pos := make([]int64, k)
	for j := range pos {
		pos[j] = mem[j*(rows/k)*rowWords]
	}
	steps := reads / k
	var sink int64
	start := time.Now()
	for range steps {
		for j, p := range pos {
			for l := 1; l < lines; l++ {
				sink += mem[p+int64(l*8)]
			}
			pos[j] = mem[p] + sink&0 // the next row depends on this row's lines
		}
	}
	elapsed := time.Since(start)
	sinkhole += sink // keeps the extra reads
	return float64(elapsed.Nanoseconds()) / float64(steps*k)
}

var sinkhole int64
