//go:build !unix

package eventlog

import "os"

// lockFile does nothing where flock is not available: one process per log
// directory is then up to the operator.
func lockFile(*os.File) error { return nil }
