//go:build !linux

package background

// lowerThreadPriority does nothing where threads have no priority of their own
// that an unprivileged process may lower.
func lowerThreadPriority() {}

// threadID reports that threads cannot be told apart here.
func threadID() (int, bool) { return 0, false }
