package index

import (
	"os"
	"strconv"
	"testing"
	"time"
)

func TestQuickRecall(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("QN"))
	dim, _ := strconv.Atoi(os.Getenv("QD"))
	spread, _ := strconv.ParseFloat(os.Getenv("QS"), 64)
	d := mixture(1, n, 500, dim, 100, spread, os.Getenv("QNORM") != "")
	start := time.Now()
	tr := truths(d, 10, nil)
	t.Logf("truth %v", time.Since(start))
	start = time.Now()
	h, err := NewHNSW(d.vecs, d.dim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build %v", time.Since(start))
	for _, ef := range []int{10, 16, 24, 32, 40, 48, 64, 96, 128} {
		h.efSearch = ef
		start = time.Now()
		got := searchAll(h, d, 10, nil)
		t.Logf("ef %d recall %.4f  %v/q", ef, recallAt(got, tr), time.Since(start)/time.Duration(len(d.queries)))
	}
}

func TestQuickCoder(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("QN"))
	dim, _ := strconv.Atoi(os.Getenv("QD"))
	spread, _ := strconv.ParseFloat(os.Getenv("QS"), 64)
	d := mixture(1, n, 500, dim, 100, spread, os.Getenv("QNORM") != "")
	tr := truths(d, 10, nil)
	start := time.Now()
	c, err := NewCoder(d.vecs, d.dim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build %v", time.Since(start))
	for _, ef := range []int{10, 40, 64, 200} {
		c.efSearch = ef
		c.g.EfSearch = ef
		start = time.Now()
		got := searchAll(c, d, 10, nil)
		t.Logf("ef %d recall %.4f  %v/q", ef, recallAt(got, tr), time.Since(start)/time.Duration(len(d.queries)))
	}
}

func TestQuickFilterCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("QN"))
	dim, _ := strconv.Atoi(os.Getenv("QD"))
	d := mixture(1, n, 300, dim, 100, 1.0, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []float64{1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01} {
		f := subset(3, n, p)
		if p == 1 {
			f = nil
		}
		tr := truths(d, 10, f)
		start := time.Now()
		var got [][]Result
		totalVisited := 0
		for _, q := range d.queries {
			s := h.pool.Get().(*scratch)
			s.reset()
			cur, curDist := h.entry, -Dot(q, h.vec(h.entry))
			for l := h.topLevel; l > 0; l-- {
				cur, curDist = h.greedy(q, cur, curDist, l, -1, nil, s)
			}
			h.searchLayer(s, q, cur, curDist, 64, 0, f, nil)
			visited := 0
			for _, v := range s.visited {
				if v == s.gen {
					visited++
				}
			}
			totalVisited += visited
			res := []Result{}
			for len(s.far) > 10 {
				s.far.pop()
			}
			for len(s.far) > 0 {
				c := s.far.pop()
				res = append([]Result{{c.id, -c.dist}}, res...)
			}
			got = append(got, res)
			h.pool.Put(s)
		}
		gt := time.Since(start) / time.Duration(len(d.queries))
		start = time.Now()
		for _, q := range d.queries {
			scan(h.vecs, h.dim, q, 10, f)
		}
		et := time.Since(start) / time.Duration(len(d.queries))
		t.Logf("p=%.2f graph %v (recall %.4f, visited %d) exact %v", p, gt, recallAt(got, tr), totalVisited/len(d.queries), et)
	}
}
