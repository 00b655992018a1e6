package hugepage

import (
	"slices"
	"testing"
	"unsafe"
)

// TestReserveServesTrackedMakes checks that Track records the big Makes of a
// load, that Reserve sets chunks of those sizes aside, and that the next
// tracked Makes of those sizes are those chunks, zeroed, each used once.
func TestReserveServesTrackedMakes(t *testing.T) {
	defer Reserve(nil)
	stop := Track()
	Make[int32](1 << 20)   // 4 MiB
	Make[float32](3 << 18) // 3 MiB
	Make[byte](1000)       // too small to count
	sizes, reserved := stop()
	if want := []int{4 << 20, 3 << 20}; !slices.Equal(sizes, want) || reserved != 0 {
		t.Fatalf("tracked sizes %v, %d bytes from reserved memory; want %v, 0", sizes, reserved, want)
	}

	Reserve(sizes)
	if got, want := Reserved(), 6<<20+4<<20; got != want { // each plus 3%, in whole huge pages
		t.Fatalf("Reserved() = %d, want %d", got, want)
	}
	chunks := map[uintptr]bool{}
	for _, c := range spare.chunks {
		chunks[uintptr(unsafe.Pointer(unsafe.SliceData(c)))] = true
	}
	if a := Make[int32](1 << 20); chunks[uintptr(unsafe.Pointer(unsafe.SliceData(a)))] {
		t.Fatal("an untracked Make took a reserved chunk")
	}

	stop = Track()
	a := Make[float32](3 << 18)
	b := Make[int32](1 << 20)
	c := Make[int32](1 << 20) // no chunk left for it
	if sizes, reserved := stop(); len(sizes) != 3 || reserved != 7<<20 {
		t.Fatalf("tracked %d Makes, %d bytes from reserved memory; want 3, %d", len(sizes), reserved, 7<<20)
	}
	if !chunks[uintptr(unsafe.Pointer(unsafe.SliceData(a)))] || !chunks[uintptr(unsafe.Pointer(unsafe.SliceData(b)))] {
		t.Fatal("tracked Makes did not take the reserved chunks")
	}
	if chunks[uintptr(unsafe.Pointer(unsafe.SliceData(c)))] || Reserved() != 0 {
		t.Fatal("a reserved chunk served two Makes")
	}
	if len(a) != 3<<18 || len(b) != 1<<20 || cap(b) != 1<<20 {
		t.Fatalf("lengths %d, %d (cap %d)", len(a), len(b), cap(b))
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatalf("b[%d] = %d, want 0", i, b[i])
		}
	}
}

// TestSpareFit checks which chunk a tracked Make takes: the smallest that
// holds it without wasting more than a quarter of it or a huge page.
func TestSpareFit(t *testing.T) {
	defer Reserve(nil)
	stop := Track()
	defer stop()
	const mib = 1 << 20
	// Chunks of 10, 14, 18, 20 and 22 MiB: each size plus 3%, in whole huge pages.
	Reserve([]int{8 * mib, 12 * mib, 16 * mib, 18 * mib, 20 * mib})
	for _, tc := range []struct{ need, chunk int }{
		{30 * mib, 0},        // larger than every chunk
		{17 * mib, 18 * mib}, // 18 and 20 both fit: the smaller
		{10 * mib, 10 * mib},
		{12 * mib, 14 * mib},
		{12 * mib, 0}, // 20 and 22 MiB would waste more than a quarter
		{16 * mib, 20 * mib},
		{20 * mib, 22 * mib},
		{mib, 0}, // none left
	} {
		if got := len(take(tc.need)); got != tc.chunk {
			t.Fatalf("take(%d MiB) took a chunk of %d MiB, want %d", tc.need/mib, got/mib, tc.chunk/mib)
		}
	}
	if Reserved() != 0 {
		t.Fatalf("%d bytes left reserved, want 0", Reserved())
	}
}
