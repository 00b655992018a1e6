package registry

import (
	"hash/maphash"
	"unsafe"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/hugepage"
)

// Rows maps a bundle's user or item ids to their rows and back. It keeps its
// own copy of the ids, back to back in one string with where each ends, and
// finds a row through an open-addressing table of row numbers, kept at most
// half full, that compares against the ids themselves. It holds three
// pointers however many ids it has, where a map from id to row or a []string
// gives the garbage collector one or two per id to mark in every cycle (a
// server with a version of 1M users and 1M items: 35–49 ms of marking per
// cycle against 2–5 ms).
type Rows struct {
	text  string  // the ids, back to back
	ends  []int   // ends[row]: where id row ends in text
	slots []int32 // row+1; 0: empty
	n     int     // distinct ids
	seed  maphash.Seed
}

// newRows indexes n ids (id(row) for row in [0, n)); an id that repeats keeps
// its first row. first and dup are the rows of the first repeat, else -1.
func newRows(n int, id func(row int) string) (rows *Rows, first, dup int) {
	return indexRows(packIDs(n, id))
}

// packIDs copies n ids back to back into text; id row ends at ends[row].
func packIDs(n int, id func(row int) string) (text []byte, ends []int) {
	total := 0
	for row := range n {
		total += len(id(row))
	}
	text, ends = hugepage.Make[byte](total)[:0], hugepage.Make[int](n)
	for row := range n {
		text = append(text, id(row)...)
		ends[row] = len(text)
	}
	return text, ends
}

// indexRows indexes the ids text holds back to back, id row ending at
// ends[row], as newRows does; the Rows keeps text and ends.
func indexRows(text []byte, ends []int) (rows *Rows, first, dup int) {
	size := 16
	for size < 2*len(ends) {
		size *= 2
	}
	r := &Rows{text: unsafe.String(unsafe.SliceData(text), len(text)), ends: ends, slots: hugepage.Make[int32](size), seed: maphash.MakeSeed()}
	first, dup = -1, -1
	for row := range ends {
		if row%4096 == 0 {
			background.Pace()
		}
		i, found := r.slot(r.ID(row))
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
		if r.ID(int(s-1)) == id {
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

// ID returns the id of row, which must be in [0, Rows()). It shares memory
// with r; it does not allocate.
func (r *Rows) ID(row int) string {
	start := 0
	if row > 0 {
		start = r.ends[row-1]
	}
	return r.text[start:r.ends[row]]
}

// Len returns the number of distinct ids.
func (r *Rows) Len() int { return r.n }

// Rows returns the number of rows, repeated ids included.
func (r *Rows) Rows() int { return len(r.ends) }
