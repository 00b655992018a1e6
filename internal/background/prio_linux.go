package background

import "golang.org/x/sys/unix"

// lowerThreadPriority sets the calling thread's nice value to 19; on Linux the
// nice value belongs to a thread, not the whole process.
func lowerThreadPriority() { _ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19) }
