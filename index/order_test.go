package index

import (
	"bytes"
	"slices"
	"testing"
)

func TestRenumberLocalityOrder(t *testing.T) {
	// Points drawn from 40 clusters in random order: graph neighbours are
	// scattered over the rows until the nodes are renumbered.
	d := mixture(11, 4000, 50, 16, 40, 0.3, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{M: 8, EfConstruction: 64, Workers: 1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	order := h.LocalityOrder()
	if got := slices.Sorted(slices.Values(order)); len(got) != h.n || got[0] != 0 || got[h.n-1] != int32(h.n-1) || slices.Compact(got)[h.n-1] != int32(h.n-1) {
		t.Fatal("LocalityOrder is not a permutation of the nodes")
	}
	vecs := make([]float32, len(d.vecs))
	for i, old := range order {
		copy(vecs[i*d.dim:(i+1)*d.dim], d.vecs[int(old)*d.dim:(int(old)+1)*d.dim])
	}
	r, err := h.Renumber(order, vecs)
	if err != nil {
		t.Fatal(err)
	}
	checkGraph(t, r)
	if before, after := nearLinks(h), nearLinks(r); after < 2*before {
		t.Errorf("%.2f of the links join nodes numbered within 64 of each other before, %.2f after; want twice as many", before, after)
	} else {
		t.Logf("links within 64: %.2f before, %.2f after", before, after)
	}
	allow := func(id int32) bool { return order[id]%3 != 0 } // the same items, by their new numbers
	for qi, q := range d.queries {
		want := h.Search(q, 10, func(id int32) bool { return id%3 != 0 })
		got := r.Search(q, 10, allow)
		for i := range got {
			got[i].ID = order[got[i].ID]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("query %d: renumbered graph found %v, the original %v", qi, got, want)
		}
	}
	// The renumbered graph persists like any other.
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadHNSW(&buf, vecs, d.dim); err != nil {
		t.Fatal(err)
	}
}

func TestRenumberRejects(t *testing.T) {
	d := mixture(1, 50, 0, 8, 3, 0.3, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{M: 4, EfConstruction: 16, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ident := make([]int32, h.n)
	for i := range ident {
		ident[i] = int32(i)
	}
	dup := slices.Clone(ident)
	dup[1] = 0
	out := slices.Clone(ident)
	out[2] = int32(h.n)
	for name, tc := range map[string]struct {
		order []int32
		vecs  []float32
	}{
		"short order":   {ident[1:], d.vecs},
		"repeated node": {dup, d.vecs},
		"unknown node":  {out, d.vecs},
		"short vectors": {ident, d.vecs[d.dim:]},
	} {
		if _, err := h.Renumber(tc.order, tc.vecs); err == nil {
			t.Errorf("%s: Renumber succeeded", name)
		}
	}
}

// nearLinks is the fraction of layer-0 links a->b with |a-b| <= 64.
func nearLinks(h *HNSW) float64 {
	var near, all float64
	for id := range int32(h.n) {
		for _, nb := range h.neighbors(id, 0) {
			if max(id-nb, nb-id) <= 64 {
				near++
			}
			all++
		}
	}
	return near / all
}
