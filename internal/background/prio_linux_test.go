package background

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// nice returns the calling thread's nice value (the raw syscall answers 20 - nice).
func nice(t *testing.T) int {
	t.Helper()
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	return 20 - p
}

func TestRunLowersOnlyItsThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine := nice(t)
	var during int
	if err := Run(func() error { during = nice(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if during != 19 {
		t.Errorf("nice inside Run = %d, want 19", during)
	}
	if got := nice(t); got != mine {
		t.Errorf("caller's nice changed from %d to %d", mine, got)
	}
	// The thread f ran on exited: no other goroutine inherits its priority.
	for range 100 {
		ch := make(chan int)
		go func() { runtime.LockOSThread(); ch <- nice(t); runtime.UnlockOSThread() }()
		if n := <-ch; n == 19 {
			t.Fatal("a later goroutine ran on a thread left at nice 19")
		}
	}
}
