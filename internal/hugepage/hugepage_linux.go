package hugepage

import (
	"errors"
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

// mark asks for huge pages under b (MADV_HUGEPAGE): pages first written
// after it are huge, pages already there stay as they are.
func mark(b []byte) error {
	if disabled() {
		return errors.New("hugepage: transparent huge pages are unavailable or disabled on this host")
	}
	return unix.Madvise(b, unix.MADV_HUGEPAGE)
}
