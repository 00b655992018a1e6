// Package memlimit tells how much memory the process may use and how much it
// holds: the limit of its cgroup, where Kubernetes puts a container's memory
// limit, and its resident memory less what the Go heap could reuse. A server
// checks a new version against them before loading it, rather than being
// killed for memory in the middle of the load.
package memlimit

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
)

// Cgroup returns the memory limit in bytes of the process's cgroup, the
// smallest set on it or on any cgroup above it (version 2 memory.max, version
// 1 memory.limit_in_bytes), or 0 when none is set or cgroups cannot be read.
func Cgroup() int64 { return cgroupLimit("/") }

// cgroupLimit is Cgroup with the file system rooted at root.
func cgroupLimit(root string) int64 {
	data, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0
	}
	limit := int64(0)
	for line := range strings.Lines(string(data)) {
		// hierarchy-ID:controllers:path; version 2 has ID 0 and no controllers.
		fields := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(fields) != 3 {
			continue
		}
		switch {
		case fields[0] == "0" && fields[1] == "":
			limit = tighter(limit, walk(filepath.Join(root, "sys/fs/cgroup"), fields[2], "memory.max"))
		case slices.Contains(strings.Split(fields[1], ","), "memory"):
			limit = tighter(limit, walk(filepath.Join(root, "sys/fs/cgroup/memory"), fields[2], "memory.limit_in_bytes"))
		}
	}
	return limit
}

// walk returns the smallest limit in file of the cgroup at path below base and
// of every cgroup above it, 0 if none is set. A cgroup namespace shows the
// process at "/", its own cgroup mounted at base.
func walk(base, path, file string) int64 {
	limit := int64(0)
	for dir := filepath.Join(base, filepath.Clean("/"+path)); ; dir = filepath.Dir(dir) {
		limit = tighter(limit, readLimit(filepath.Join(dir, file)))
		if len(dir) <= len(base) {
			return limit
		}
	}
}

// tighter returns the smaller of two limits, where 0 is none.
func tighter(a, b int64) int64 {
	if a == 0 || b > 0 && b < a {
		return b
	}
	return a
}

// unlimited: version 1 reports no limit as the largest page-aligned int64.
const unlimited = 1 << 62

// readLimit parses a limit file: a byte count, or "max" for none (0).
func readLimit(name string) int64 {
	data, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	if err != nil || n >= unlimited {
		return 0
	}
	return n
}

// InUse returns the bytes the process holds that it cannot reuse for new
// data: its resident set (/proc/self/statm) less the heap memory the Go
// runtime has free but not yet returned to the system. It returns 0 where
// /proc cannot be read.
func InUse() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return max(0, pages*int64(os.Getpagesize())-int64(s[0].Value.Uint64()))
}
