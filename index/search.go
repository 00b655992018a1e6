package index

import (
	"math"
	"slices"
	"sync"
)

// Search implements Index. It runs a graph search (a greedy walk down the
// upper layers, then an ef-wide search of layer 0 with ef = max(EfSearch,
// k)) unless an exact scan is estimated cheaper (see preferScan): for very
// selective filters, small indexes or k close to n. A filter is applied
// inside the layer-0 search: disallowed nodes are traversed but never enter
// the result set. If the graph yields fewer than k allowed items, Search
// falls back to the exact scan, so it returns k items whenever k are
// allowed. It allocates only the result slice.
func (h *HNSW) Search(q []float32, k int, f Filter) []Result {
	if k <= 0 || len(q) != h.dim || h.n == 0 {
		return nil
	}
	k = min(k, h.n)
	ef := max(h.efSearch, k)
	if ef >= h.n {
		return scan(h.vecs, h.dim, q, k, f)
	}
	if useScan, _ := preferScan(f, h.n, ef); useScan {
		return scan(h.vecs, h.dim, q, k, f)
	}
	if res := h.searchGraph(q, k, ef, f); res != nil {
		return res
	}
	return scan(h.vecs, h.dim, q, k, f)
}

// searchGraph returns the best k of an ef-wide graph search, or nil if it
// found fewer than k allowed items. The walk scores rows from the codes; its
// ef best are scored again from the vectors, so results and scores are exact.
func (h *HNSW) searchGraph(q []float32, k, ef int, f Filter) []Result {
	s, ok := h.pool.Get().(*scratch)
	if !ok {
		s = new(scratch)
	}
	defer h.pool.Put(s)
	s.reset()
	s.q16 = slices.Grow(s.q16[:0], h.codes.width)[:h.codes.width]
	s.qf = h.codes.query(q, s.q16)
	cur := h.entry
	curDist := h.distances(s, q, []int32{cur}, false)[0]
	for l := h.topLevel; l > 0; l-- {
		cur, curDist = h.greedy(q, cur, curDist, l, -1, nil, s)
	}
	h.searchLayer(s, q, cur, curDist, ef, 0, f, nil)
	if len(s.far) < k {
		return nil
	}
	s.ids = s.ids[:0]
	for _, c := range s.far {
		s.ids = append(s.ids, c.id())
	}
	exact := h.distances(s, q, s.ids, true)
	s.far = s.far[:0]
	for i, id := range s.ids {
		c := newCandidate(exact[i], id)
		if len(s.far) < k {
			s.far.push(c)
		} else if c < s.far[0] {
			s.far.replaceTop(c)
		}
	}
	res := make([]Result, k)
	for i := k - 1; i >= 0; i-- {
		c := s.far.pop()
		res[i] = Result{ID: c.id(), Score: -c.dist()}
	}
	return res
}

// distances sets s.dists to the distances (negative inner products) from q
// to ids and returns it: exact, from the vectors, when building the graph
// or re-scoring; approximate, from the codes and the query the search
// prepared in s, when walking it.
func (h *HNSW) distances(s *scratch, q []float32, ids []int32, exact bool) []float32 {
	s.dists = slices.Grow(s.dists[:0], len(ids))[:len(ids)]
	if exact {
		dots(q, h.vecs, h.dim, ids, s.dists)
		for i, d := range s.dists {
			s.dists[i] = -d
		}
		return s.dists
	}
	s.sums = slices.Grow(s.sums[:0], len(ids))[:len(ids)]
	h.codes.dists(s.q16, s.qf, ids, s.sums, s.dists)
	return s.dists
}

// greedy walks level from cur to the node closest to q, moving to the closest
// neighbour while it is closer than the current node. It skips node self (the
// node being inserted). With locks (build time) each list is copied under its
// lock and scored exactly; a search scores from the codes (see distances).
func (h *HNSW) greedy(q []float32, cur int32, curDist float32, level int, self int32, locks []sync.Mutex, s *scratch) (int32, float32) {
	for changed := true; changed; {
		changed = false
		nbs := h.links(cur, level, locks, s)
		for i, d := range h.distances(s, q, nbs, locks != nil) {
			if nb := nbs[i]; d < curDist && nb != self {
				cur, curDist, changed = nb, d, true
			}
		}
	}
	return cur, curDist
}

// links returns the neighbours of id on level. With locks (build time) it
// returns a copy taken under the node's lock in s.links.
func (h *HNSW) links(id int32, level int, locks []sync.Mutex, s *scratch) []int32 {
	if locks == nil {
		return h.neighbors(id, level)
	}
	mu := &locks[id]
	mu.Lock()
	s.links = append(s.links[:0], h.neighbors(id, level)...)
	mu.Unlock()
	return s.links
}

// searchLayer is the ef-wide best-first search of one layer from ep
// (Algorithm 2 of the paper, as in hnswlib's searchBaseLayer), exact with
// locks (build time), from the codes without (see distances). It leaves up
// to ef results in s.far. Only nodes allowed by f enter s.far, but every
// node is expanded; with a filter the search keeps going until s.far holds
// ef allowed nodes or the reachable graph is exhausted. The caller resets s.
func (h *HNSW) searchLayer(s *scratch, q []float32, ep int32, epDist float32, ef, level int, f Filter, locks []sync.Mutex) {
	s.visited.reserve(1)
	s.visited.add(ep)
	s.near.push(newCandidate(epDist, ep))
	bound := float32(math.Inf(1))
	if f == nil || f(ep) {
		s.far.push(newCandidate(epDist, ep))
		bound = epDist
	}
	for len(s.near) > 0 {
		c := s.near.pop()
		if c.dist() > bound && (len(s.far) >= ef || f == nil) {
			break
		}
		// Score the unvisited neighbours in one batch (see dots).
		s.ids = s.visited.addNew(h.links(c.id(), level, locks, s), s.ids[:0])
		dists := h.distances(s, q, s.ids, locks != nil)
		if level == 0 && locks == nil && len(s.near) > 0 {
			// The best waiting node is often the next expanded: fetch the
			// codes of its links while this batch is merged.
			h.codes.prefetch(h.neighbors(s.near[0].id(), 0))
		}
		for i, nb := range s.ids {
			d := dists[i]
			if len(s.far) >= ef && d >= bound {
				continue
			}
			cand := newCandidate(d, nb)
			s.near.push(cand)
			if level == 0 && locks == nil {
				// nb may be expanded soon: fetch its links meanwhile.
				b := h.block(nb, 0)
				prefetch(&b[0], len(b))
			}
			if f == nil || f(nb) {
				if len(s.far) < ef {
					s.far.push(cand)
				} else { // d < bound: nb is closer than the farthest
					s.far.replaceTop(cand)
				}
				bound = s.far[0].dist()
			}
		}
	}
}
