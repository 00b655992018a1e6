package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteTimeline(t *testing.T) {
	ms := int64(time.Millisecond)
	samples := []sample{ // by start time
		{at: 10 * ms, took: 2 * ms, lag: 1 * ms},
		{at: 20 * ms, took: 4 * ms},
		{at: 250 * ms, took: 9 * ms, lag: 3 * ms}, // 100–200 ms had no requests
	}
	path := filepath.Join(t.TempDir(), "timeline.tsv")
	if err := writeTimeline(path, samples, map[string]int64{"publish": 260 * ms}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# t_s\trequests\tp50_ms\tp99_ms\tmax_ms\tlag_p99_ms\n" +
		"0.0\t2\t2.00\t4.00\t4.00\t1.00\n" +
		"# publish at 0.260 s\n" +
		"0.2\t1\t9.00\t9.00\t9.00\t3.00\n"
	if got := string(data); got != want {
		t.Errorf("timeline:\n%s\nwant:\n%s", got, want)
	}
}
