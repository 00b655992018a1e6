package background

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

func TestRunReturnsErrorAndRestoresProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	want := errors.New("boom")
	var during int
	err := Run(func() error {
		during = runtime.GOMAXPROCS(0)
		return want
	})
	if !errors.Is(err, want) {
		t.Fatalf("Run returned %v, want %v", err, want)
	}
	if during != before+1 {
		t.Errorf("GOMAXPROCS during Run = %d, want %d", during, before+1)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after Run = %d, want %d", got, before)
	}
}

func TestRunNested(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	start, release := make(chan struct{}), make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = Run(func() error { start <- struct{}{}; <-release; return nil })
		}()
	}
	for range 3 {
		<-start
	}
	if got := runtime.GOMAXPROCS(0); got != before+3 {
		t.Errorf("GOMAXPROCS with 3 runs = %d, want %d", got, before+3)
	}
	close(release)
	wg.Wait()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after the runs = %d, want %d", got, before)
	}
}

func TestRunPanics(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer func() {
		if p := recover(); p != "bad" {
			t.Errorf("recovered %v, want the panic of f", p)
		}
		if got := runtime.GOMAXPROCS(0); got != before {
			t.Errorf("GOMAXPROCS after a panic = %d, want %d", got, before)
		}
	}()
	_ = Run(func() error { panic("bad") })
}
