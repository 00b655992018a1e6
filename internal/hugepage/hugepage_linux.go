package hugepage

import "golang.org/x/sys/unix"

func advise(b []byte) error {
	if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
		return err
	}
	return unix.Madvise(b, unix.MADV_COLLAPSE)
}
