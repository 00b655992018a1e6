package index

import (
	"math/bits"
	"slices"
)

// visitSet is the set of nodes one search has reached: open addressing over a
// power-of-two table of id+1 (0: empty slot), kept at most half full. A
// search at ef 64 reaches about a thousand nodes, so the table (16 KiB) stays
// in the processor's nearest caches, where a mark per node of the graph (2 MiB
// at 1M items) cost a cache miss for most of the ~2,200 links a search
// checks, and pushed the graph's own rows out of the cache.
type visitSet struct {
	slots []int32
	n     int
	shift uint // 32 - log2(len(slots))
}

// minVisitSlots is the table's initial size.
const minVisitSlots = 4096

// reset empties the set for a new search.
func (v *visitSet) reset() {
	if v.slots == nil {
		v.resize(minVisitSlots)
		return
	}
	clear(v.slots)
	v.n = 0
}

// reserve grows the table, if need be, so that m more ids fit: add itself
// never grows it.
func (v *visitSet) reserve(m int) {
	for 2*(v.n+m) > len(v.slots) {
		v.resize(2 * len(v.slots))
	}
}

// add inserts id and reports whether it was not in the set yet. The caller
// has reserved room for it.
func (v *visitSet) add(id int32) bool {
	mask := len(v.slots) - 1
	for i := int(uint32(id) * 0x9E3779B1 >> v.shift); ; i = (i + 1) & mask {
		switch v.slots[i] {
		case 0:
			v.slots[i] = id + 1
			v.n++
			return true
		case id + 1:
			return false
		}
	}
}

// addNew adds ids (distinct, as in one link list), appends those that were
// not in the set yet to out and returns it. It grows the table as needed.
// Whether a link was reached before is a coin toss in a search, so the
// common cases, an empty slot or the id itself at its first probe, take no
// branch: the slot is written either way and out's length advances by
// whether it was empty. Only an id whose first slot holds another takes
// add's probing loop.
func (v *visitSet) addNew(ids, out []int32) []int32 {
	v.reserve(len(ids))
	k, added := len(out), 0
	out = slices.Grow(out, len(ids))[:k+len(ids)]
	for _, id := range ids {
		i := int(uint32(id) * 0x9E3779B1 >> v.shift)
		s := v.slots[i]
		if min(uint32(s), uint32(s^(id+1))) != 0 { // neither empty nor id
			if v.add(id) {
				out[k] = id
				k++
			}
			continue
		}
		empty := 0
		if s == 0 {
			empty = 1
		}
		v.slots[i] = id + 1
		out[k] = id
		k += empty
		added += empty
	}
	v.n += added
	return out[:k]
}

// resize moves the set into a table of size slots (a power of two).
func (v *visitSet) resize(size int) {
	old := v.slots
	v.slots, v.n, v.shift = make([]int32, size), 0, uint(32-bits.TrailingZeros(uint(size)))
	for _, x := range old { // at most half of old's size: a quarter of the new one
		if x != 0 {
			v.add(x - 1)
		}
	}
}
