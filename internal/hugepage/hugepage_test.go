package hugepage

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestAdviseKeepsContents checks that slices of every size and alignment
// keep their contents, including ones with no whole huge page inside.
func TestAdviseKeepsContents(t *testing.T) {
	big := make([]int32, 3*size/4+1000)
	for i := range big {
		big[i] = int32(i * 7)
	}
	for _, s := range [][]int32{nil, big[:1], big[3:5000], big[1:], big} {
		if err := Advise(s); err != nil && !supported() {
			continue
		} else if err != nil {
			t.Fatalf("Advise(%d elements): %v", len(s), err)
		}
	}
	for i, x := range big {
		if x != int32(i*7) {
			t.Fatalf("element %d = %d after Advise, want %d", i, x, i*7)
		}
	}
}

// TestAdviseBacksWithHugePages checks, where the kernel offers transparent
// huge pages, that an advised array ends up backed by them.
func TestAdviseBacksWithHugePages(t *testing.T) {
	if !supported() {
		t.Skip("transparent huge pages are not available here")
	}
	b := bytes.Repeat([]byte{1}, 8*size) // at least three whole huge pages
	before := anonHuge(t, b)
	if err := Advise(b); err != nil {
		t.Fatal(err)
	}
	if after := anonHuge(t, b); after < before+3*size/1024 {
		t.Errorf("AnonHugePages of the mapping: %d kB before, %d kB after, want 3 huge pages more", before, after)
	}
	if bytes.Count(b, []byte{1}) != len(b) {
		t.Error("contents changed")
	}
}

// supported reports whether the kernel has transparent huge pages enabled.
func supported() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && !strings.Contains(string(b), "[never]")
}

// anonHuge returns the AnonHugePages (kB) of the mapping that holds the
// middle of b.
func anonHuge(t *testing.T, b []byte) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addr := uintptr(unsafe.Pointer(&b[len(b)/2])) // inside the advised part, which madvise may split into a mapping of its own
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && !strings.HasSuffix(f[0], ":") { // a mapping's first line
			var lo, hi uintptr
			_, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi)
			in = err == nil && lo <= addr && addr < hi
			continue
		}
		var kb int
		if _, err := fmt.Sscanf(line, "AnonHugePages: %d kB", &kb); err == nil && in {
			return kb
		}
	}
	t.Fatal("no mapping holds the slice")
	return 0
}
