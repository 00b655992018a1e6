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

// TestMakeFaultsInHugePages checks that a slice from Make gets huge pages
// at its first writes, with no collapse, and reads as zeros before them.
func TestMakeFaultsInHugePages(t *testing.T) {
	if disabled() {
		t.Skip("transparent huge pages are not available here")
	}
	b := Make[byte](8 * size) // fresh memory from the OS in a new test process
	if bytes.Count(b, []byte{0}) != len(b) {
		t.Fatal("Make's slice is not zeroed")
	}
	for i := range b {
		b[i] = 1
	}
	if kb := anonHuge(t, b); kb < 3*size/1024 {
		t.Errorf("AnonHugePages of the mapping after writing: %d kB, want at least 3 huge pages", kb)
	}
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
	addr := uintptr(unsafe.Pointer(&b[len(b)/2])) // inside the marked part, which madvise may split into a mapping of its own
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && !strings.HasSuffix(fields[0], ":") { // a mapping's first line
			var lo, hi uintptr
			_, err := fmt.Sscanf(fields[0], "%x-%x", &lo, &hi)
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
