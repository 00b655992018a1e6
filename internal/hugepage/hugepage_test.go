package hugepage

import "testing"

// TestAdviseKeepsContents checks that slices of every size and alignment
// keep their contents, including ones with no whole huge page inside.
func TestAdviseKeepsContents(t *testing.T) {
	big := make([]int32, size+1000) // 8 MiB: whole huge pages inside
	for i := range big {
		big[i] = int32(i * 7)
	}
	for _, s := range [][]int32{nil, big[:1], big[3:5000], big[1:], big} {
		_ = Advise(s) // a hint: whether it took is TestAdviseBacksWithHugePages's question
	}
	for i, x := range big {
		if x != int32(i*7) {
			t.Fatalf("element %d = %d after Advise, want %d", i, x, i*7)
		}
	}
}
