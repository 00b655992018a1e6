package background

import (
	"runtime"
	"testing"
	"time"

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

// busy calls Pace for three bursts' time, and once more after.
func busy() {
	for start := time.Now(); time.Since(start) < 3*burst; {
		Pace()
	}
	Pace()
}

func TestPaceRestsOnlyInRunPaced(t *testing.T) {
	rests.Store(0)
	busy() // outside any run
	if err := Run(func() error { busy(); return nil }); err != nil {
		t.Fatal(err)
	}
	if n := rests.Load(); n != 0 {
		t.Fatalf("%d rests outside RunPaced, want none", n)
	}
	var other int64
	err := RunPaced(func() error {
		busy()
		// A goroutine f starts runs on another thread, unpaced.
		before := rests.Load()
		done := make(chan struct{})
		go func() { busy(); close(done) }()
		<-done
		other = rests.Load() - before
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if other != 0 {
		t.Errorf("a goroutine started by f rested %d times, want none", other)
	}
	// A rest after each burst: at least one, at most one per burst busy ran.
	if n := rests.Load(); n < 1 || n > 4 {
		t.Errorf("%d rests in RunPaced, want 1 to 4", n)
	}
	if pacing.Load() != 0 {
		t.Errorf("%d threads still paced after RunPaced returned", pacing.Load())
	}
}

func TestPaceEndsAfterPaceFor(t *testing.T) {
	rests.Store(0)
	err := RunPaced(func() error {
		id, _ := threadID()
		v, _ := paced.Load(id)
		v.(*pace).until = time.Now() // as if paceFor had passed
		busy()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := rests.Load(); n != 0 {
		t.Errorf("%d rests after the end of pacing, want none", n)
	}
}
