package registry

import "hash/maphash"

// Rows finds the row of an id among a bundle's user or item ids. It is an
// open-addressing table of row numbers, kept at most half full, that compares
// against the ids themselves: unlike a map from id to row it holds no
// pointers, so the garbage collector does not scan it (two maps of 1M string
// keys per loaded version made every collection cycle mark 2M more entries).
type Rows struct {
	id    func(row int) string
	slots []int32 // row+1; 0: empty
	n     int
	seed  maphash.Seed
}

// newRows indexes n ids (id(row) for row in [0, n)); an id that repeats keeps
// its first row. first and dup are the rows of the first repeat, else -1.
func newRows(n int, id func(row int) string) (rows *Rows, first, dup int) {
	size := 16
	for size < 2*n {
		size *= 2
	}
	r := &Rows{id: id, slots: make([]int32, size), seed: maphash.MakeSeed()}
	first, dup = -1, -1
	for row := range n {
		i, found := r.slot(id(row))
		if !found {
			r.slots[i] = int32(row + 1)
			r.n++
		} else if dup < 0 {
			first, dup = int(r.slots[i]-1), row
		}
	}
	return r, first, dup
}

// slot returns where id is in the table, or the empty slot where it would go.
func (r *Rows) slot(id string) (i int, found bool) {
	mask := len(r.slots) - 1
	for i = int(maphash.String(r.seed, id)) & mask; ; i = (i + 1) & mask {
		s := r.slots[i]
		if s == 0 {
			return i, false
		}
		if r.id(int(s-1)) == id {
			return i, true
		}
	}
}

// Row returns the row of id and whether there is one.
func (r *Rows) Row(id string) (int32, bool) {
	i, found := r.slot(id)
	if !found {
		return -1, false
	}
	return r.slots[i] - 1, true
}

// Len returns the number of ids.
func (r *Rows) Len() int { return r.n }
