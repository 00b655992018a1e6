package hugepage

import (
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// disabled reports whether the host has no transparent huge pages or its
// operator turned them off.
var disabled = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err != nil || strings.Contains(string(b), "[never]")
})

// mark asks for huge pages under b (MADV_HUGEPAGE), unless they are disabled:
// pages first written after it are huge, pages already there stay as they
// are. It is a hint; a refusal changes nothing.
func mark(b []byte) {
	if !disabled() {
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	}
}
