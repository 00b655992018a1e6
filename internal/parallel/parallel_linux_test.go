package parallel

import (
	"context"
	"runtime"
	"syscall"
	"testing"
)

// TestOneWorkerStaysOnCallersThread: a server's fold-in Gramian
// runs with one worker inside a background load, on a thread of low priority;
// it must not move to a goroutine of normal priority.
func TestOneWorkerStaysOnCallersThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	caller := syscall.Gettid()
	var blocks int
	err := For(context.Background(), 1, 5, func(_, _ int) {
		if tid := syscall.Gettid(); tid != caller {
			t.Errorf("block ran on thread %d, want the caller's %d", tid, caller)
		}
		blocks++
	})
	if err != nil || blocks != 5 {
		t.Fatalf("For ran %d blocks, err %v; want 5, nil", blocks, err)
	}
}
