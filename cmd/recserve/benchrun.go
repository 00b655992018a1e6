package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// loadGCPercent is the load generator's GOGC while it drives the load.
const loadGCPercent = 800

// benchResult is what one run measured.
type benchResult struct {
	steady window // before the publish (the whole run without -swap)
	// With -swap:
	swapWindow  window        // from the publish to 1 s after the first new-version response
	after       window        // the rest
	toNew       time.Duration // publish to the first response from the new version
	loadSeconds float64       // the server's own load+build time of the new version
	indexSource string        // how the server got the new version's index: "prebuilt" or "built"
	// Server memory (bytes): after the steady phase and at the end, and the peak.
	rssSteady, rssEnd, hwm int64
	versionsAtEnd          int
	// CPU time the server and the load generator (this process) used in the steady phase.
	serverCPU, loadCPU time.Duration
	// With -ranking: the steady phase's plain and ranked requests.
	plain, ranked window
	// With -catalog-rate: the catalog phase and what it applied; with
	// -catalog-cycle its stretches with changes and without.
	catalogWindow, catalogOn, catalogOff window
	catalog                              *catalogResult
}

// benchServe stages the synthetic model, starts "recserve serve" on it, drives
// load and writes the report to out.
func benchServe(ctx context.Context, cfg benchConfig, out io.Writer) (*benchResult, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	if cfg.dir == "" {
		tmp, err := os.MkdirTemp("", "recserve-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		cfg.dir = tmp
	}
	if cfg.exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.exe = exe
	}
	staged, err := benchStage(cfg, cfg.dir, logf)
	if err != nil {
		return nil, err
	}
	regDir := filepath.Join(cfg.dir, "registry")
	if err := os.RemoveAll(regDir); err != nil { // a fresh registry for every run
		return nil, err
	}
	if err := publishVersion(staged[0], regDir); err != nil {
		return nil, err
	}

	args := append([]string{"-registry", regDir, "-models", benchModel, "-plaintext", "-grpc-addr", "127.0.0.1:0",
		"-http-addr", "off", "-cache-ttl=-1s", "-poll", cfg.poll.String(), "-catalog-dir", filepath.Join(cfg.dir, "catalog")}, cfg.serveArgs...)
	if err := os.RemoveAll(filepath.Join(cfg.dir, "catalog")); err != nil { // no changes of an earlier run
		return nil, err
	}
	if cfg.catalogKafka {
		broker, stop, err := startBroker(cfg.exe)
		if err != nil {
			return nil, err
		}
		defer stop()
		args = append(args, "-kafka", broker)
	}
	var logs io.Writer
	if cfg.verbose {
		logs = os.Stderr
	}
	t0 := time.Now()
	srv, err := startChild(cfg.exe, args, logs)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	startCtx, cancel := context.WithTimeout(ctx, cfg.startTimeout)
	addr, err := srv.waitServing(startCtx)
	cancel()
	if err != nil {
		return nil, err
	}
	logf("bench: server pid %d serving on %s after %s", srv.cmd.Process.Pid, addr, time.Since(t0).Round(time.Millisecond))

	if cfg.procs > 0 {
		// At 20–35 µs of CPU per request one processor has room for far
		// more load than the server takes, and with one the load generator
		// wakes no second thread per response to steal the work (with
		// grpc-go's client: 38–44 instead of 51–57 µs per request), CPU the
		// server gets.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.procs))
	}
	// The load generator's heap is some 10 MB; at the default percentage it
	// collected every second, and each collection's marking on its one
	// processor delayed the requests falling due meanwhile, latency the
	// results would blame on the server (send lag p99 3.0–5.1 ms; 1.4–2.0
	// at 400 and 1.1–1.5 at 800 but for one stall of the whole guest;
	// BENCHMARKS.md).
	defer debug.SetGCPercent(debug.SetGCPercent(loadGCPercent))
	g := &loadGen{users: cfg.gen.Users, n: int32(cfg.n), timeout: cfg.timeout, workers: cfg.concurrency, rate: cfg.rate, rankCycle: cfg.rankingCycle}
	if cfg.ranking != "" {
		g.ranking = new(recservev1.Ranking)
		if err := protojson.Unmarshal([]byte(cfg.ranking), g.ranking); err != nil {
			return nil, fmt.Errorf("bench serve: -ranking: %w", err)
		}
	}
	if err := g.dial(addr, cfg.conns); err != nil {
		return nil, err
	}
	if cfg.swap {
		g.newVersion = filepath.Base(staged[1])
	}
	res, err := drive(ctx, cfg, g, srv, addr, staged, regDir)
	if err != nil {
		return nil, err
	}
	if err := srv.stop(); err != nil {
		return nil, fmt.Errorf("server stop: %w", err)
	}
	report(out, cfg, res)
	return res, nil
}

// drive runs the load: a steady phase, then with -swap the publish of the new
// version and another phase once it serves.
func drive(ctx context.Context, cfg benchConfig, g *loadGen, srv *child, addr string, staged []string, regDir string) (*benchResult, error) {
	res := &benchResult{versionsAtEnd: 1}
	pid := srv.cmd.Process.Pid
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	start := time.Now()
	srvCPU0, loadCPU0 := cpuTime(pid), cpuTime(os.Getpid())
	samplesc := make(chan []sample, 1)
	go func() { samplesc <- g.run(loadCtx, start) }()

	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-srv.done:
			return fmt.Errorf("server exited under load: %v", srv.err)
		case <-time.After(d):
			return nil
		}
	}
	if err := wait(cfg.duration); err != nil {
		return nil, err
	}
	res.rssSteady, _, _ = memory(pid)
	res.serverCPU, res.loadCPU = cpuTime(pid)-srvCPU0, cpuTime(os.Getpid())-loadCPU0
	end := time.Since(start).Nanoseconds()
	var published, catFrom int64
	if cfg.catalogRate > 0 {
		catStart, srvCPU := time.Now(), cpuTime(pid)
		stopCatalog, err := startCatalogDriver(cfg.exe, addr, cfg.gen.Items, cfg.gen.Users, cfg.catalogRate, cfg.catalogCycle)
		if err != nil {
			return nil, err
		}
		err = wait(cfg.duration)
		if res.catalog, err = stopCatalog(); err != nil {
			return nil, err
		}
		res.catalog.ServerCPU = cpuTime(pid) - srvCPU
		catFrom, end = catStart.Sub(start).Nanoseconds(), time.Since(start).Nanoseconds()
	}
	if cfg.swap {
		published = time.Since(start).Nanoseconds()
		// No summary of the steady phase here: copying and sorting its samples
		// would hold the load generator's processor for tens of milliseconds
		// and stall every request at the start of the swap window.
		fmt.Fprintf(os.Stderr, "bench: steady phase done, RSS %s; publishing version %s\n", mib(res.rssSteady), g.newVersion)
		if err := publishVersion(staged[1], regDir); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(cfg.swapTimeout)
		for g.firstNew.Load() == 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("version %s not served within %s of publishing", g.newVersion, cfg.swapTimeout)
			}
			if err := wait(10 * time.Millisecond); err != nil {
				return nil, err
			}
		}
		res.toNew = time.Duration(g.firstNew.Load() - published)
		if err := wait(time.Second + cfg.duration); err != nil {
			return nil, err
		}
		res.versionsAtEnd = 2
		end = time.Since(start).Nanoseconds()
	}
	res.rssEnd, res.hwm, _ = memory(pid)
	stopLoad()
	samples := <-samplesc
	if cfg.timeline != "" {
		events := map[string]int64{}
		if cfg.swap {
			events["publish"], events["first new-version response"] = published, g.firstNew.Load()
		}
		if err := writeTimeline(cfg.timeline, samples, events); err != nil {
			return nil, err
		}
	}
	if g.ranking != nil {
		steadyEnd := end
		if cfg.catalogRate > 0 {
			steadyEnd = catFrom
		} else if cfg.swap {
			steadyEnd = published
		}
		res.plain = summarizeWhere(samples, 0, steadyEnd, func(at int64) bool { return !g.ranked(at) })
		res.ranked = summarizeWhere(samples, 0, steadyEnd, g.ranked)
	}
	if cfg.catalogRate > 0 {
		res.steady = summarize(samples, 0, catFrom)
		res.catalogWindow = summarize(samples, catFrom, end)
		if c := cfg.catalogCycle.Nanoseconds(); c > 0 {
			on := func(at int64) bool { return (at-catFrom)/c%2 == 0 }
			res.catalogOn = summarizeWhere(samples, catFrom, end, on)
			res.catalogOff = summarizeWhere(samples, catFrom, end, func(at int64) bool { return !on(at) })
		}
		return res, nil
	}
	if !cfg.swap {
		res.steady = summarize(samples, 0, end)
		return res, nil
	}
	settled := g.firstNew.Load() + int64(time.Second)
	res.steady = summarize(samples, 0, published)
	res.swapWindow = summarize(samples, published, settled)
	res.after = summarize(samples, settled, end)
	for len(srv.loads) > 0 {
		if l := <-srv.loads; l.Version == g.newVersion {
			res.loadSeconds, res.indexSource = l.LoadSeconds, l.Index
		}
	}
	return res, nil
}

// report prints the result as a Markdown table.
func report(w io.Writer, cfg benchConfig, r *benchResult) {
	load, _ := os.ReadFile("/proc/loadavg")
	mode := fmt.Sprintf("closed loop, concurrency %d", cfg.concurrency)
	if cfg.rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f requests/s, at most %d in flight", cfg.rate, cfg.concurrency)
	}
	procs := cfg.procs
	if procs <= 0 {
		procs = runtime.GOMAXPROCS(0)
	}
	fmt.Fprintf(w, "recserve bench serve: %d users, %d items, dim %d, n %d, %s over %d conns, load generator on %d processor(s), loadavg %s\n\n",
		cfg.gen.Users, cfg.gen.Items, cfg.gen.Dim, cfg.n, mode, cfg.conns, procs, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintln(w, "| phase | requests | errors | rps | p50 | p90 | p99 | p99.9 | max | versions |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	row := func(name string, x window) {
		fmt.Fprintf(w, "| %s | %d | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", name, x.requests, errorText(x), x.rps(),
			ms(x.quantile(0.5)), ms(x.quantile(0.9)), ms(x.quantile(0.99)), ms(x.quantile(0.999)), ms(x.quantile(1)), versionText(x))
	}
	row("steady", r.steady)
	if cfg.ranking != "" {
		row("steady: plain", r.plain)
		row("steady: ranked", r.ranked)
	}
	if cfg.catalogRate > 0 {
		row("catalog", r.catalogWindow)
		if cfg.catalogCycle > 0 {
			row("catalog: changing", r.catalogOn)
			row("catalog: not changing", r.catalogOff)
		}
	}
	if cfg.swap {
		row("swap", r.swapWindow)
		row("after", r.after)
	}
	raw := cfg.rawBytes()
	fmt.Fprintf(w, "\nserver RSS: %s after the steady phase (1 version and memory set aside for a second: %.2fx its %s raw embeddings)", mib(r.rssSteady), float64(r.rssSteady)/float64(raw), mib(raw))
	if cfg.swap {
		fmt.Fprintf(w, ", %s at the end (%d versions: %.2fx raw)", mib(r.rssEnd), r.versionsAtEnd, float64(r.rssEnd)/float64(raw*int64(r.versionsAtEnd)))
	}
	fmt.Fprintf(w, "; peak %s\n", mib(r.hwm))
	if n := r.steady.requests; n > 0 {
		fmt.Fprintf(w, "CPU in the steady phase: server %.1f s (%.0f µs/request), load generator %.1f s (%.0f µs/request)\n",
			r.serverCPU.Seconds(), float64(r.serverCPU.Microseconds())/float64(n), r.loadCPU.Seconds(), float64(r.loadCPU.Microseconds())/float64(n))
	}
	if cfg.rate > 0 {
		fmt.Fprintf(w, "open loop: the load generator sent requests after they were due by p50 %s, p99 %s, p99.9 %s in the steady phase (included in the latencies above)\n",
			ms(quantile(r.steady.lag, 0.5)), ms(quantile(r.steady.lag, 0.99)), ms(quantile(r.steady.lag, 0.999)))
	}
	if cfg.ranking != "" {
		fmt.Fprintf(w, "ranking %s, alternating every %s: p99 ranked %s vs plain %s (%.2fx)\n", cfg.ranking, cfg.rankingCycle,
			ms(r.ranked.quantile(0.99)), ms(r.plain.quantile(0.99)), float64(r.ranked.quantile(0.99))/float64(max(r.plain.quantile(0.99), 1)))
	}
	if c := r.catalog; c != nil {
		path := "applied by the server"
		if cfg.catalogKafka {
			path = "through the catalog topic (an embedded broker in a process of its own)"
		}
		fmt.Fprintf(w, "catalog: %d availability changes acknowledged in %s (%.0f/s, %s), %d batches failed; p99 during them %s vs steady %s (%.2fx)\n",
			c.Sent, cfg.duration, float64(c.Sent)/cfg.duration.Seconds(), path, c.Failed, ms(r.catalogWindow.quantile(0.99)), ms(r.steady.quantile(0.99)),
			float64(r.catalogWindow.quantile(0.99))/float64(max(r.steady.quantile(0.99), 1)))
		fmt.Fprintf(w, "catalog: the load generator sent requests after they were due by p99 %s, p99.9 %s in the catalog phase\n",
			ms(quantile(r.catalogWindow.lag, 0.99)), ms(quantile(r.catalogWindow.lag, 0.999)))
		if n := r.catalogWindow.requests; n > 0 {
			fmt.Fprintf(w, "catalog: CPU in the catalog phase: server %.1f s (%.0f µs/request), the driver of the changes %.1f s\n",
				c.ServerCPU.Seconds(), float64(c.ServerCPU.Microseconds())/float64(n), c.DriverCPU.Seconds())
		}
		fmt.Fprintf(w, "catalog: change to effect (acknowledgement to the first response without the item) over %d probes: p50 %s, p99 %s, max %s; %d probes failed\n",
			len(c.Effect), ms(quantile(c.Effect, 0.5)), ms(quantile(c.Effect, 0.99)), ms(quantile(c.Effect, 1)), c.ProbeErrors)
		if cfg.catalogCycle > 0 {
			fmt.Fprintf(w, "catalog: alternating every %s: p99 while changing %s vs not changing %s (%.2fx); send lag p99 %s vs %s\n", cfg.catalogCycle,
				ms(r.catalogOn.quantile(0.99)), ms(r.catalogOff.quantile(0.99)), float64(r.catalogOn.quantile(0.99))/float64(max(r.catalogOff.quantile(0.99), 1)),
				ms(quantile(r.catalogOn.lag, 0.99)), ms(quantile(r.catalogOff.lag, 0.99)))
		}
		if c.FirstError != "" {
			fmt.Fprintf(w, "catalog: the first failed batch: %s\n", c.FirstError)
		}
	}
	if cfg.swap {
		fmt.Fprintf(w, "swap: publish to first response from the new version %s (server load %.1f s, index %s); p99 during swap %s vs steady %s (%.2fx)\n",
			r.toNew.Round(time.Millisecond), r.loadSeconds, r.indexSource, ms(r.swapWindow.quantile(0.99)), ms(r.steady.quantile(0.99)),
			float64(r.swapWindow.quantile(0.99))/float64(max(r.steady.quantile(0.99), 1)))
	}
}

func errorText(x window) string {
	if len(x.errors) == 0 && x.short == 0 {
		return "0"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(x.errors)) {
		parts = append(parts, fmt.Sprintf("%s:%d", c, x.errors[c]))
	}
	if x.short > 0 {
		parts = append(parts, fmt.Sprintf("short:%d", x.short))
	}
	return strings.Join(parts, " ")
}

func versionText(x window) string {
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(x.versions)) {
		parts = append(parts, fmt.Sprintf("v%s:%d", v, x.versions[v]))
	}
	return strings.Join(parts, " ")
}

func ms(d time.Duration) string   { return fmt.Sprintf("%.2f ms", msf(d)) }
func msf(d time.Duration) float64 { return float64(d) / 1e6 }
func mib(b int64) string          { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
