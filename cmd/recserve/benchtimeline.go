package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"
)

// timelineStep is the interval writeTimeline summarizes.
const timelineStep = 100 * time.Millisecond

// writeTimeline writes one line per timelineStep of the run to path: its start
// (seconds since the load started), the requests that started in it, their
// p50, p99 and largest latency and p99 send lag, in ms. samples are sorted by
// start; events name moments of the run (ns since the start), written as
// comments before the interval they fall in.
func writeTimeline(path string, samples []sample, events map[string]int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# t_s\trequests\tp50_ms\tp99_ms\tmax_ms\tlag_p99_ms")
	names := slices.Sorted(maps.Keys(events)) // events of one interval in a fixed order
	var lat, lag []time.Duration
	for i := 0; i < len(samples); {
		from := samples[i].at / int64(timelineStep) * int64(timelineStep)
		to := from + int64(timelineStep)
		for _, name := range names {
			if at := events[name]; at >= from && at < to {
				fmt.Fprintf(w, "# %s at %.3f s\n", name, float64(at)/1e9)
			}
		}
		lat, lag = lat[:0], lag[:0]
		for ; i < len(samples) && samples[i].at < to; i++ {
			lat = append(lat, time.Duration(samples[i].took))
			lag = append(lag, time.Duration(samples[i].lag))
		}
		slices.Sort(lat)
		slices.Sort(lag)
		fmt.Fprintf(w, "%.1f\t%d\t%.2f\t%.2f\t%.2f\t%.2f\n", float64(from)/1e9, len(lat),
			msf(quantile(lat, 0.5)), msf(quantile(lat, 0.99)), msf(lat[len(lat)-1]), msf(quantile(lag, 0.99)))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
