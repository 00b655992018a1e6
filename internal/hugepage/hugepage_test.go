package hugepage

import "testing"

// TestMakeIsZeroed checks that Make returns n zeroed elements for sizes with
// and without whole huge pages inside, and that they hold what is written.
func TestMakeIsZeroed(t *testing.T) {
	for _, n := range []int{0, 1, 5000, size/4 + 3, 2*size + 1} {
		s := Make[int32](n)
		if len(s) != n {
			t.Fatalf("Make(%d) has %d elements", n, len(s))
		}
		for i := range s {
			if s[i] != 0 {
				t.Fatalf("Make(%d)[%d] = %d, want 0", n, i, s[i])
			}
			s[i] = int32(i * 7)
		}
		for i, x := range s {
			if x != int32(i*7) {
				t.Fatalf("Make(%d)[%d] = %d after writing %d", n, i, x, i*7)
			}
		}
	}
}
