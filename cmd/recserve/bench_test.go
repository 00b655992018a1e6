package main

import (
	"bytes"
	"context"
	"flag"
	"maps"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recserve/recserve/internal/daemon"
	"github.com/recserve/recserve/registry"
)

// TestMain lets the test binary stand in for recserve: with RECSERVE_TEST_MAIN=1
// it runs main, so "bench serve" can start it as its "recserve serve" child.
func TestMain(m *testing.M) {
	if os.Getenv("RECSERVE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBenchServeSwap(t *testing.T) {
	t.Setenv("RECSERVE_TEST_MAIN", "1")
	cfg := benchConfig{
		gen:      genOptions{Users: 2000, Items: 2000, Dim: 16, Clusters: 50, Noise: 0.1, Categories: 5, Seen: 3, Seed: 1},
		dir:      t.TempDir(),
		duration: time.Second, concurrency: 4, conns: 2, n: 20, timeout: 10 * time.Second,
		swap: true, prebuild: true, swapTimeout: time.Minute, startTimeout: time.Minute, poll: 100 * time.Millisecond,
	}
	var out bytes.Buffer
	res, err := benchServe(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for name, w := range map[string]window{"steady": res.steady, "swap": res.swapWindow, "after": res.after} {
		if w.requests == 0 || w.failed() != 0 || w.short != 0 {
			t.Errorf("%s: %d requests, errors %v, %d with fewer than 20 items", name, w.requests, w.errors, w.short)
		}
	}
	if got := slices.Sorted(maps.Keys(res.steady.versions)); !slices.Equal(got, []string{"1"}) {
		t.Errorf("before the publish, versions %v answered, want only 1", got)
	}
	if got := slices.Sorted(maps.Keys(res.after.versions)); !slices.Equal(got, []string{"2"}) {
		t.Errorf("after the swap, versions %v answered, want only 2", got)
	}
	if res.indexSource != "prebuilt" {
		t.Errorf("the server got version 2's index as %q, want the prebuilt graph", res.indexSource)
	}
	if res.swapWindow.versions["2"] == 0 || res.toNew <= 0 || res.loadSeconds <= 0 {
		t.Errorf("swap: %+v, publish to new version %v, load %v s", res.swapWindow.versions, res.toNew, res.loadSeconds)
	}
	if res.rssEnd <= 0 || res.hwm < res.rssEnd || res.versionsAtEnd != 2 {
		t.Errorf("server memory: rss %d, peak %d, %d versions", res.rssEnd, res.hwm, res.versionsAtEnd)
	}
	if res.serverCPU <= 0 || res.loadCPU <= 0 {
		t.Errorf("steady-phase CPU: server %v, load generator %v; want both measured", res.serverCPU, res.loadCPU)
	}
	if !strings.Contains(out.String(), "| steady | ") {
		t.Errorf("report lacks the steady row:\n%s", out.String())
	}
}

func TestBenchStageReuse(t *testing.T) {
	cfg := benchConfig{gen: genOptions{Users: 30, Items: 40, Dim: 4, Clusters: 3, Noise: 0.1, Categories: 2, Seen: 2, Seed: 1}, swap: true}
	dir := t.TempDir()
	var generated int
	logf := func(format string, _ ...any) {
		if strings.Contains(format, "generated") {
			generated++
		}
	}
	first, err := benchStage(cfg, dir, logf)
	if err != nil || len(first) != 2 || generated != 2 {
		t.Fatalf("first run: staged %v, %d generated, err %v; want 2 generated", first, generated, err)
	}
	again, err := benchStage(cfg, dir, logf)
	if err != nil || !slices.Equal(again, first) || generated != 2 {
		t.Fatalf("same options: staged %v (%d generated in all), err %v; want %v reused", again, generated, err, first)
	}
	cfg.gen.Seed = 2
	other, err := benchStage(cfg, dir, logf)
	if err != nil || generated != 4 || other[0] == first[0] {
		t.Fatalf("another seed: staged %v (%d generated in all), err %v; want new versions", other, generated, err)
	}
	reg := t.TempDir()
	if err := publishVersion(first[0], reg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first[0]); err != nil {
		t.Errorf("publishing removed the staged version: %v", err)
	}
	r, err := registry.Open(reg)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := r.Load(benchModel, "1"); err != nil || b.Manifest.Items != 40 {
		t.Errorf("the published version does not load: %v", err)
	}
}

func TestGenBundleDeterministic(t *testing.T) {
	o := genOptions{Users: 50, Items: 40, Dim: 8, Clusters: 4, Noise: 0.1, Categories: 3, Seen: 2, Seed: 9}
	a, b := genBundle("m", o), genBundle("m", o)
	if !slices.Equal(a.UserVectors, b.UserVectors) || !slices.Equal(a.ItemVectors, b.ItemVectors) || !slices.Equal(a.SeenItems, b.SeenItems) {
		t.Fatal("same options, different bundles")
	}
	o.Seed++
	if c := genBundle("m", o); slices.Equal(a.ItemVectors, c.ItemVectors) || !slices.Equal(a.UserIDs, c.UserIDs) {
		t.Fatal("another seed must change the vectors and keep the ids")
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := range o.Items {
		v := a.ItemVectors[i*o.Dim : (i+1)*o.Dim]
		var norm float32
		for _, x := range v {
			norm += x * x
		}
		if norm < 0.999 || norm > 1.001 {
			t.Fatalf("item %d has squared norm %v, want 1", i, norm)
		}
	}
}

func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		flagSet bool
		flag    int
		env     string
		want    int
		ok      bool
	}{
		{false, defaultGOGC, "", defaultGOGC, true}, // neither: the serve default
		{false, defaultGOGC, "100", 0, false},       // GOGC in the environment wins over the default
		{true, 50, "100", 50, true},                 // an explicit flag wins over the environment
		{true, -1, "", -1, true},                    // -gogc=-1 turns the collector off, as GOGC=off does
	} {
		if got, ok := gcPercent(tc.flagSet, tc.flag, tc.env); got != tc.want || ok != tc.ok {
			t.Errorf("gcPercent(%v, %d, %q) = %d, %v; want %d, %v", tc.flagSet, tc.flag, tc.env, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBenchServeOpenLoop(t *testing.T) {
	t.Setenv("RECSERVE_TEST_MAIN", "1")
	cfg := benchConfig{
		gen:      genOptions{Users: 1000, Items: 1000, Dim: 16, Clusters: 20, Noise: 0.1, Categories: 5, Seen: 3, Seed: 1},
		dir:      t.TempDir(),
		duration: 2 * time.Second, concurrency: 8, conns: 1, n: 10, rate: 100, timeout: 10 * time.Second,
		prebuild: true, startTimeout: time.Minute, poll: time.Second,
	}
	var out bytes.Buffer
	res, err := benchServe(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	// About 200 requests are due in the 2 s (one more per 10 ms the phase overruns);
	// the last few may still be in flight at the end.
	if w := res.steady; w.requests < 150 || w.requests > 205 || w.failed() != 0 || w.short != 0 {
		t.Errorf("%d requests (want 150 to 205 at 100/s for 2 s), errors %v, %d short", w.requests, w.errors, w.short)
	}
	if !strings.Contains(out.String(), "open loop at 100 requests/s") {
		t.Errorf("report does not name the open loop:\n%s", out.String())
	}
}

func TestBenchLoadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"-conns", "0"}, "-conns is 0"},
		{[]string{"-concurrency", "0"}, "-concurrency is 0"},
		{[]string{"-rate", "-5"}, "-rate is -5"},
		{[]string{"-rate", "NaN"}, "-rate is NaN"},
		{[]string{"-n", "0"}, "-n is 0"},
		{[]string{"-timeout", "0s"}, "-timeout is 0s"},
		{[]string{"-catalog-rate", "-1"}, "-catalog-rate is -1"},
		{[]string{"-catalog-rate", "100", "-swap"}, "-catalog-rate and -swap"},
	} {
		err := runBench(context.Background(), append([]string{"serve"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench serve %v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}

// TestServeSetsGoMemoryLimit: serve's flags set the Go runtime's memory limit
// to 95% of -memory-limit-mib, unless GOMEMLIMIT is set or there is no limit.
func TestServeSetsGoMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, tc := range []struct {
		limit, env string
		want       int64
	}{
		{"1000", "", 950 << 20},
		{"1000", "2GiB", math.MaxInt64}, // the environment's own limit stays
		{"0", "", math.MaxInt64},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		t.Setenv("GOMEMLIMIT", tc.env)
		var cfg daemon.Config
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		finish := serveFlags(fs, &cfg)
		if err := fs.Parse([]string{"-memory-limit-mib=" + tc.limit}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		err := finish(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		mib, _ := strconv.ParseInt(tc.limit, 10, 64)
		if got := debug.SetMemoryLimit(-1); got != tc.want || cfg.MemoryLimit != mib<<20 {
			t.Errorf("-memory-limit-mib=%s, GOMEMLIMIT=%q: runtime limit %d, config %d; want %d", tc.limit, tc.env, got, cfg.MemoryLimit, tc.want)
		}
	}
}

// TestBenchServeCatalog: the catalog phase applies availability changes
// through a broker of its own, alternating with stretches without, and
// probes change to effect.
func TestBenchServeCatalog(t *testing.T) {
	t.Setenv("RECSERVE_TEST_MAIN", "1")
	cfg := benchConfig{
		gen:      genOptions{Users: 1000, Items: 1000, Dim: 16, Clusters: 20, Noise: 0.1, Categories: 5, Seen: 3, Seed: 1},
		dir:      t.TempDir(),
		duration: 2 * time.Second, concurrency: 8, conns: 1, n: 10, rate: 100, timeout: 10 * time.Second,
		prebuild: true, startTimeout: time.Minute, poll: time.Second,
		catalogRate: 2000, catalogCycle: 500 * time.Millisecond, catalogKafka: true,
	}
	var out bytes.Buffer
	res, err := benchServe(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	c := res.catalog
	if c == nil || c.Sent < catalogBatch || c.Failed != 0 || len(c.Effect) == 0 || c.ProbeErrors != 0 {
		t.Fatalf("catalog phase: %+v", c)
	}
	if res.catalogOn.requests == 0 || res.catalogOff.requests == 0 || res.catalogWindow.failed() != 0 {
		t.Errorf("catalog windows: on %d, off %d requests, errors %v", res.catalogOn.requests, res.catalogOff.requests, res.catalogWindow.errors)
	}
	if !strings.Contains(out.String(), "| catalog: changing | ") || !strings.Contains(out.String(), "change to effect") {
		t.Errorf("report lacks the catalog rows:\n%s", out.String())
	}
}

// TestBenchServeRanking: with -ranking the steady phase alternates ranked and
// plain requests and reports both.
func TestBenchServeRanking(t *testing.T) {
	t.Setenv("RECSERVE_TEST_MAIN", "1")
	cfg := benchConfig{
		gen:      genOptions{Users: 1000, Items: 1000, Dim: 16, Clusters: 20, Noise: 0.1, Categories: 5, Seen: 3, Seed: 1},
		dir:      t.TempDir(),
		duration: 2 * time.Second, concurrency: 8, conns: 1, n: 10, rate: 100, timeout: 10 * time.Second,
		prebuild: true, startTimeout: time.Minute, poll: time.Second,
		ranking: `{"diversityLambda":0.3,"maxPerCategory":3,"explorationShare":0.1}`, rankingCycle: 500 * time.Millisecond,
	}
	var out bytes.Buffer
	res, err := benchServe(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for name, w := range map[string]window{"plain": res.plain, "ranked": res.ranked} {
		if w.requests < 50 || w.failed() != 0 || w.short != 0 {
			t.Errorf("%s: %d requests, errors %v, %d short", name, w.requests, w.errors, w.short)
		}
	}
	if !strings.Contains(out.String(), "p99 ranked") {
		t.Errorf("report lacks the ranking comparison:\n%s", out.String())
	}
}
