package background

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// sched returns the calling thread's scheduling class and nice value.
func sched(t *testing.T) (policy uint32, nice int32) {
	t.Helper()
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a.Policy, a.Nice
}

func TestRunLowersOnlyItsThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	myPolicy, myNice := sched(t)
	var during uint32
	if err := Run(func() error { during, _ = sched(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if during != unix.SCHED_IDLE {
		t.Errorf("scheduling class inside Run = %d, want SCHED_IDLE (%d)", during, unix.SCHED_IDLE)
	}
	if p, n := sched(t); p != myPolicy || n != myNice {
		t.Errorf("caller's class and nice changed from %d/%d to %d/%d", myPolicy, myNice, p, n)
	}
	// The thread f ran on exited: no other goroutine inherits its class.
	for range 100 {
		ch := make(chan uint32)
		go func() { runtime.LockOSThread(); p, _ := sched(t); ch <- p; runtime.UnlockOSThread() }()
		if p := <-ch; p == unix.SCHED_IDLE {
			t.Fatal("a later goroutine ran on a thread left in SCHED_IDLE")
		}
	}
}
