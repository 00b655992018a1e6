package registry

import (
	"fmt"
	"testing"
)

// TestRows checks lookups, ids that are absent, repeats and sizes around the
// table's growth points (300k ids: whole huge pages in the table, the ends
// and the text).
func TestRows(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 1000, 4097, 300_000} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("id-%d", i*7)
		}
		r, first, dup := newRows(n, func(i int) string { return ids[i] })
		if first != -1 || dup != -1 || r.Len() != n || 2*n > len(r.slots) {
			t.Fatalf("n=%d: repeat %d/%d, %d ids in %d slots", n, first, dup, r.Len(), len(r.slots))
		}
		for i, id := range ids {
			if row, ok := r.Row(id); !ok || row != int32(i) {
				t.Fatalf("n=%d: Row(%q) = %d, %v; want %d", n, id, row, ok, i)
			}
			if got := r.ID(i); got != id {
				t.Fatalf("n=%d: ID(%d) = %q, want %q", n, i, got, id)
			}
		}
		if r.Rows() != n {
			t.Fatalf("n=%d: Rows() = %d", n, r.Rows())
		}
		for _, id := range []string{"", "id-1", "id-", fmt.Sprintf("id-%d", n*7)} {
			if row, ok := r.Row(id); ok {
				t.Errorf("n=%d: absent %q found at row %d", n, id, row)
			}
		}
	}
	ids := []string{"a", "b", "a", "c", "b"}
	r, first, dup := newRows(len(ids), func(i int) string { return ids[i] })
	if first != 0 || dup != 2 {
		t.Errorf("first repeat at rows %d and %d, want 0 and 2", first, dup)
	}
	if row, _ := r.Row("a"); row != 0 || r.Len() != 3 {
		t.Errorf("a repeated id keeps its first row: a at %d, %d ids", row, r.Len())
	}
	if row, ok := r.Row("c"); !ok || row != 3 {
		t.Errorf("c at row %d (%v), want 3", row, ok)
	}
	if r.Rows() != 5 || r.ID(2) != "a" || r.ID(4) != "b" {
		t.Errorf("repeated ids keep their rows: %d rows, ids %q and %q at rows 2 and 4", r.Rows(), r.ID(2), r.ID(4))
	}
}
