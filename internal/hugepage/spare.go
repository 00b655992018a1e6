package hugepage

import (
	"slices"
	"sync"
	"unsafe"

	"github.com/recserve/recserve/internal/background"
)

// Memory a process touches for the first time can be slow to get: on the
// Firecracker guests of BENCHMARKS.md 0.4–0.6 GB/s, the host backing each page
// as it is first written, and a thread woken on the vCPU doing it waits for
// the host. A version of 1M users and 1M items is about 1 GB of arrays, so a
// load beside live traffic held the serving threads up for seconds in all.
// A server therefore sets memory aside for its next version while it can
// afford to (Reserve), and the next load makes its big arrays from that
// memory instead of fresh pages (Track).

// minTracked is the smallest Make that Track records and spare memory
// serves: a version's memory is in its few big arrays.
const minTracked = 1 << 20

var spare struct {
	sync.Mutex
	tracking int      // Track calls in progress
	sizes    []int    // bytes of each Make of at least minTracked while tracking
	taken    int      // of them, bytes made in spare chunks
	chunks   [][]byte // set aside by Reserve, every page touched, all zero
}

// Track records the sizes in bytes of the arrays of at least 1 MiB that Make
// returns until stop is called, and returns them from stop, with how many of
// those bytes came from the memory Reserve set aside. While anything is
// tracked, such a Make takes its array from the memory Reserve set aside when
// a chunk there fits. Tracking is process-wide: it is meant for one load at a
// time, and a Make elsewhere while a load runs counts as the load's.
func Track() (stop func() (sizes []int, reserved int)) {
	spare.Lock()
	defer spare.Unlock()
	spare.tracking++
	start, taken := len(spare.sizes), spare.taken
	return func() ([]int, int) {
		spare.Lock()
		defer spare.Unlock()
		sizes, reserved := slices.Clone(spare.sizes[start:]), spare.taken-taken
		if spare.tracking--; spare.tracking == 0 {
			spare.sizes, spare.taken = nil, 0
		}
		return sizes, reserved
	}
}

// Reserve sets memory aside for arrays of the given sizes in bytes (as Track
// returned them, plus 3% for a version that grew) and touches every page of
// it now (calling background.Pace between huge pages), so that later tracked
// Makes of those sizes get memory the process already has. It releases what
// was set aside before; Reserve(nil) releases everything. The memory counts
// in the process's resident size from now on.
func Reserve(sizes []int) {
	spare.Lock()
	spare.chunks = nil
	spare.Unlock()
	chunks := make([][]byte, 0, len(sizes))
	for _, n := range sizes {
		b := marked[byte]((n + n/32 + size - 1) &^ (size - 1))
		for i := 0; i < len(b); i += 4096 {
			if i%size == 0 {
				background.Pace()
			}
			b[i] = 0 // the first write faults the page in
		}
		chunks = append(chunks, b)
	}
	spare.Lock()
	spare.chunks = chunks
	spare.Unlock()
}

// Reserved returns the bytes set aside.
func Reserved() int {
	spare.Lock()
	defer spare.Unlock()
	total := 0
	for _, c := range spare.chunks {
		total += len(c)
	}
	return total
}

// take records a Make of n bytes while tracking and returns the smallest
// spare chunk that holds n bytes without wasting more than a quarter of n or
// a huge page, or nil.
func take(n int) []byte {
	spare.Lock()
	defer spare.Unlock()
	if spare.tracking == 0 {
		return nil
	}
	spare.sizes = append(spare.sizes, n)
	best := -1
	for i, c := range spare.chunks {
		if len(c) >= n && len(c)-n <= max(n/4, size) && (best < 0 || len(c) < len(spare.chunks[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	c := spare.chunks[best]
	spare.chunks = slices.Delete(spare.chunks, best, best+1)
	spare.taken += n
	return c
}

// fromSpare returns n Ts in a spare chunk, or nil.
func fromSpare[T Elem](n int) []T {
	var zero T
	bytes := n * int(unsafe.Sizeof(zero))
	if bytes < minTracked {
		return nil
	}
	c := take(bytes)
	if c == nil {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(c))), n)
}
