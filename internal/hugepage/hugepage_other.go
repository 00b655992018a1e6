//go:build !linux

package hugepage

import "errors"

func mark([]byte) error { return errors.ErrUnsupported }
