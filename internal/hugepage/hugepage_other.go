//go:build !linux

package hugepage

import "errors"

func advise([]byte) error { return errors.ErrUnsupported }
