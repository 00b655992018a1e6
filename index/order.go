package index

import (
	"errors"
	"fmt"

	"github.com/recserve/recserve/internal/perm"
)

// LocalityOrder returns an order of the nodes in which graph neighbours sit
// close together: from the entry point, the unplaced layer-0 neighbours of
// the most recently placed node are placed next (a depth-first walk that
// places whole link lists at once), then the same from the lowest node not
// reached. order[i] is the node to become node i (see Renumber). A search
// reads the vectors and links of the nodes it visits at random; in this
// order they share more cache lines, pages and TLB entries (1M x 64, one
// thread, ef 64: 9.6k -> 12.8k queries/s, BENCHMARKS.md).
func (h *HNSW) LocalityOrder() []int32 {
	order := make([]int32, 0, h.n)
	placed := make([]bool, h.n)
	var stack []int32
	place := func(id int32) {
		if !placed[id] {
			placed[id] = true
			order = append(order, id)
			stack = append(stack, id)
		}
	}
	next := int32(0) // no node below it is unplaced
	for len(order) < h.n || len(stack) > 0 {
		if len(stack) == 0 {
			if len(order) == 0 {
				place(h.entry)
			} else {
				for placed[next] {
					next++
				}
				place(next)
			}
		}
		u := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, nb := range h.neighbors(u, 0) {
			place(nb)
		}
	}
	return order
}

// Renumber returns h with node order[i] as node i, over vectors, which must
// be h's vectors in that order (row i of vectors is row order[i] of h's).
// Searches of the result find the same nodes under their new numbers.
func (h *HNSW) Renumber(order []int32, vectors []float32) (*HNSW, error) {
	if len(order) != h.n || len(vectors) != len(h.vecs) {
		return nil, fmt.Errorf("index: renumber %d nodes of dim %d with an order of %d and %d values", h.n, h.dim, len(order), len(vectors))
	}
	newID, ok := perm.Inverse(order)
	if !ok {
		return nil, errors.New("index: renumber: the order is not a permutation of the nodes")
	}
	r := &HNSW{vecs: vectors, dim: h.dim, n: h.n, m: h.m, m0: h.m0, efSearch: h.efSearch,
		levels: make([]uint8, h.n), links0: make([]int32, len(h.links0)),
		upperOff: make([]int32, h.n), upper: make([]int32, 0, len(h.upper)),
		entry: newID[h.entry], topLevel: h.topLevel}
	relink := func(dst, src []int32) {
		dst[0] = src[0]
		for j, nb := range src[1 : 1+src[0]] {
			dst[1+j] = newID[nb]
		}
	}
	for i, old := range order {
		r.levels[i] = h.levels[old]
		relink(r.block(int32(i), 0), h.block(old, 0))
		r.upperOff[i] = -1
		if l := int(h.levels[old]); l > 0 {
			r.upperOff[i] = int32(len(r.upper))
			r.upper = append(r.upper, make([]int32, l*(h.m+1))...)
			for level := 1; level <= l; level++ {
				relink(r.block(int32(i), level), h.block(old, level))
			}
		}
	}
	r.codes = quantize(vectors, h.dim)
	return r, nil
}
