package hugepage

import (
	"errors"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// disabled reports whether the host has no transparent huge pages or its
// operator turned them off, which MADV_COLLAPSE would otherwise ignore.
var disabled = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err != nil || strings.Contains(string(b), "[never]")
})

func advise(b []byte) error {
	if disabled() {
		return errors.New("hugepage: transparent huge pages are unavailable or disabled on this host")
	}
	if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
		return err
	}
	return unix.Madvise(b, unix.MADV_COLLAPSE)
}
