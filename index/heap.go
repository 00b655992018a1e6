package index

import "math"

// candidate is a node and its distance to the query (negative inner
// product), packed so that one unsigned comparison orders candidates by
// distance, ties by lower id: the distance's bits, mapped to an unsigned
// key in the same order, above the id. The heaps of a search compare
// candidates in their inner loops, where a two-field comparison cost
// branches the processor mispredicts.
type candidate uint64

// newCandidate packs dist (not NaN) and id (not negative).
func newCandidate(dist float32, id int32) candidate {
	b := math.Float32bits(dist)
	b ^= uint32(int32(b)>>31) | 1<<31 // negative: flip all bits; else: the sign bit
	return candidate(uint64(b)<<32 | uint64(uint32(id)))
}

func (c candidate) dist() float32 {
	k := uint32(c >> 32)
	return math.Float32frombits(k ^ (uint32(int32(^k)>>31) | 1<<31))
}

func (c candidate) id() int32 { return int32(uint32(c)) }

// nearHeap is a binary min-heap of candidates: the closest is at index 0.
type nearHeap []candidate

func (h *nearHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if c >= s[p] {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = c
}

func (h *nearHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	last := s[n]
	s = s[:n]
	*h = s
	if n == 0 {
		return top
	}
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		c += b2i(s[min(c+1, n-1)] < s[c]) // no branch: the pick is a coin toss
		if s[c] >= last {
			break
		}
		s[i] = s[c]
		i = c
	}
	s[i] = last
	return top
}

// farHeap is a binary max-heap of candidates: the farthest is at index 0.
type farHeap []candidate

func (h *farHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p] >= c {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = c
}

func (h *farHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	last := s[n]
	*h = s[:n]
	if n > 0 {
		(*h).replaceTop(last)
	}
	return top
}

// replaceTop puts c in place of the farthest candidate: one sift where a
// push and a pop would take two.
func (h farHeap) replaceTop(c candidate) {
	n := len(h)
	i := 0
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		j += b2i(h[j] < h[min(j+1, n-1)]) // no branch: the pick is a coin toss
		if c >= h[j] {
			break
		}
		h[i] = h[j]
		i = j
	}
	h[i] = c
}

// b2i is 1 for true, 0 for false, computed without a branch.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// worse orders results by score, ties by higher ID being worse.
func worse(a, b Result) bool {
	return a.Score < b.Score || (a.Score == b.Score && a.ID > b.ID)
}

// resultHeap is a bounded top-k heap of results with the worst at index 0.
// It lives in the caller's result slice, so a scan allocates only that slice.
type resultHeap []Result

// offer adds r if the heap has fewer than cap(h) items or r beats the worst.
func (h *resultHeap) offer(r Result) {
	s := *h
	if len(s) < cap(s) {
		s = append(s, r)
		i := len(s) - 1
		for i > 0 {
			p := (i - 1) / 2
			if !worse(r, s[p]) {
				break
			}
			s[i] = s[p]
			i = p
		}
		s[i] = r
		*h = s
		return
	}
	if len(s) == 0 || !worse(s[0], r) {
		return
	}
	s.down(0, r, len(s))
}

// down places r at index i of s[:n] and sifts it towards the leaves.
func (h resultHeap) down(i int, r Result, n int) {
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if rc := c + 1; rc < n && worse(h[rc], h[c]) {
			c = rc
		}
		if !worse(h[c], r) {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = r
}

// sortBestFirst heap-sorts h in place into best-first order.
func (h resultHeap) sortBestFirst() {
	for end := len(h) - 1; end > 0; end-- {
		w := h[0]
		h.down(0, h[end], end)
		h[end] = w
	}
}
