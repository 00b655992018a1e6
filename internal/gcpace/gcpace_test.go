package gcpace

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, headroom uint64
		most, want     int
	}{
		{1560e6, 128 * mib, 25, 9},     // a 1M-item model: 8.6% rounded up
		{2300e6, 128 * mib, 25, 6},     // two of them
		{100 * mib, 128 * mib, 25, 25}, // a small model keeps the most
		{40e9, 128 * mib, 25, 1},       // at least 1: 0 would collect continually
		{0, 128 * mib, 25, 25},         // nothing live yet
		{512 * mib, 128 * mib, 10, 10},
	} {
		if got := Percent(tc.live, tc.headroom, tc.most); got != tc.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", tc.live, tc.headroom, tc.most, got, tc.want)
		}
	}
}

// live keeps memory reachable while a test runs.
var live [][]byte

func TestRunFollowsTheLiveHeapAndRestores(t *testing.T) {
	old := debug.SetGCPercent(40)
	defer debug.SetGCPercent(old)
	live = make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	defer func() { live = nil }()
	runtime.GC()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, 8<<20, time.Millisecond); close(done) }()
	paced := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, want := int(read("/gc/gogc:percent")), Percent(read("/gc/heap/live:bytes"), 8<<20, 40)
			if got == want && got < 40 {
				return // ~64 MiB live: 8 MiB is about 13%
			}
			if time.Now().After(deadline) {
				t.Fatalf("GC percent %d, want %d (live %d bytes)", got, want, read("/gc/heap/live:bytes"))
			}
			time.Sleep(time.Millisecond)
		}
	}
	paced()

	cancel()
	<-done
	if got := read("/gc/gogc:percent"); got != 40 {
		t.Errorf("GC percent %d after Run returned, want 40 restored", got)
	}
}

func TestRunLeavesTheCollectorOff(t *testing.T) {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	Run(ctx, 8<<20, time.Millisecond)
	if time.Since(start) >= time.Second {
		t.Error("Run with the collector off should return at once")
	}
	if got := int64(read("/gc/gogc:percent")); got >= 0 {
		t.Errorf("GC percent %d, want the collector still off", got)
	}
}
