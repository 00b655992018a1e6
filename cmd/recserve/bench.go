package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/recserve/recserve/registry"
)

const benchModel = "bench"

// benchConfig is what "recserve bench serve" measures.
type benchConfig struct {
	gen          genOptions
	dir          string // work directory (default: a temporary one, removed afterwards)
	duration     time.Duration
	concurrency  int
	rate         float64 // open loop: requests per second (0: closed loop)
	conns        int
	procs        int // GOMAXPROCS of the load generator while it drives the load (0: unchanged)
	n            int
	timeout      time.Duration
	swap         bool
	prebuild     bool // publish versions with their HNSW graph, as recserve train does
	swapTimeout  time.Duration
	startTimeout time.Duration
	poll         time.Duration
	serveArgs    []string // extra flags for the child "recserve serve"
	exe          string   // binary to run "serve" with (default: this one)
	verbose      bool     // copy the server's log to stderr
	timeline     string   // file for per-interval latencies (empty: none)
	catalogRate  float64  // availability changes per second in a catalog phase after the steady one (0: none)
	catalogKafka bool     // the catalog phase's changes travel through an embedded Kafka broker
	catalogCycle time.Duration
	ranking      string // protojson of a recserve.v1.Ranking sent in every other rankingCycle
	rankingCycle time.Duration
}

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == catalogDriverCommand {
		return runCatalogDriver(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == brokerCommand {
		return runBroker(ctx)
	}
	if len(args) == 0 || args[0] != "serve" {
		return errors.New(`usage: recserve bench serve [flags] (the only benchmark so far)`)
	}
	cfg := benchConfig{gen: genOptions{Clusters: 1000, Noise: 0.1, Categories: 20, Seen: 5, Seed: 1}}
	fs := flag.NewFlagSet("bench serve", flag.ContinueOnError)
	fs.IntVar(&cfg.gen.Users, "users", 100_000, "synthetic users")
	fs.IntVar(&cfg.gen.Items, "items", 100_000, "synthetic items")
	fs.IntVar(&cfg.gen.Dim, "dim", 64, "embedding dimensions")
	fs.IntVar(&cfg.gen.Clusters, "clusters", cfg.gen.Clusters, "taste clusters of the synthetic vectors")
	fs.IntVar(&cfg.gen.Seen, "seen", cfg.gen.Seen, "training items per user (excluded from recommendations)")
	fs.StringVar(&cfg.dir, "dir", "", "work directory; staged versions left there are reused by runs with the same options (default: a temporary directory, removed at the end)")
	fs.DurationVar(&cfg.duration, "duration", 30*time.Second, "steady-state load duration (with -swap: before and again after the swap)")
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "concurrent requests (closed loop), or most requests in flight (with -rate)")
	fs.Float64Var(&cfg.rate, "rate", 0, "open loop: send this many requests per second, latency counted from when each was due (0: closed loop)")
	fs.IntVar(&cfg.conns, "conns", 4, "gRPC connections the requests share")
	fs.IntVar(&cfg.procs, "procs", 1, "processors (GOMAXPROCS) of the load generator while it drives the load; the server child keeps all of them (0: all)")
	fs.IntVar(&cfg.n, "n", 20, "items per Recommend")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Second, "deadline of each request")
	fs.BoolVar(&cfg.swap, "swap", false, "publish a second version of the same size under load and measure the swap")
	fs.BoolVar(&cfg.prebuild, "prebuild", true, "publish versions with their prebuilt HNSW graph, as recserve train does (false: the server builds the index)")
	fs.DurationVar(&cfg.swapTimeout, "swap-timeout", 20*time.Minute, "how long to wait for the new version to serve")
	fs.DurationVar(&cfg.startTimeout, "start-timeout", 2*time.Hour, "how long to wait for the server to load version 1 and serve")
	fs.DurationVar(&cfg.poll, "poll", 2*time.Second, "the server's registry poll interval")
	fs.StringVar(&cfg.exe, "serve-exe", "", "binary to run \"serve\" with, e.g. another build to compare (default: this one)")
	fs.BoolVar(&cfg.verbose, "v", false, "copy the server's log to stderr")
	fs.StringVar(&cfg.timeline, "timeline", "", "write the latencies of every 100 ms of the run (requests, p50, p99, max, send lag p99) to this file, as tab-separated text")
	fs.Float64Var(&cfg.catalogRate, "catalog-rate", 0, "after the steady phase, a catalog phase of -duration applying this many availability changes per second (batches of 1000) while probing change-to-effect latency (0: none)")
	fs.DurationVar(&cfg.catalogCycle, "catalog-cycle", 5*time.Second, "in the catalog phase, alternate changes for this long with none for this long, and compare the latencies of the two (0: changes throughout)")
	fs.StringVar(&cfg.ranking, "ranking", "", `re-ranking to compare with plain requests, as JSON of recserve.v1.Ranking, e.g. '{"diversityLambda":0.3,"explorationShare":0.1}': sent in every other -ranking-cycle of the steady phase`)
	fs.DurationVar(&cfg.rankingCycle, "ranking-cycle", 5*time.Second, "with -ranking: how long each stretch of ranked or plain requests lasts")
	fs.BoolVar(&cfg.catalogKafka, "catalog-kafka", false, "the catalog changes travel through a Kafka broker (kfake, in a process of its own) that the server consumes, as in production; else the server applies them itself")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator (this process) to this file; -serve-flag=-cpuprofile=F profiles the server")
	fs.Func("serve-flag", "extra flag for the child server, e.g. -serve-flag=-ef-search=32 (repeatable)", func(s string) error {
		cfg.serveArgs = append(cfg.serveArgs, s)
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.checkLoad(); err != nil {
		return err
	}
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	_, err = benchServe(ctx, cfg, os.Stdout)
	return err
}

// checkLoad rejects load settings the load generator cannot run.
func (cfg benchConfig) checkLoad() error {
	switch {
	case cfg.conns < 1:
		return fmt.Errorf("bench serve: -conns is %d, want at least 1", cfg.conns)
	case cfg.concurrency < 1:
		return fmt.Errorf("bench serve: -concurrency is %d, want at least 1", cfg.concurrency)
	case !(cfg.rate >= 0) || math.IsInf(cfg.rate, 1):
		return fmt.Errorf("bench serve: -rate is %v, want 0 (closed loop) or a positive number", cfg.rate)
	case cfg.n < 1:
		return fmt.Errorf("bench serve: -n is %d, want at least 1", cfg.n)
	case cfg.timeout <= 0:
		return fmt.Errorf("bench serve: -timeout is %v, want more than 0", cfg.timeout)
	case !(cfg.catalogRate >= 0) || math.IsInf(cfg.catalogRate, 1):
		return fmt.Errorf("bench serve: -catalog-rate is %v, want 0 or a positive number", cfg.catalogRate)
	case cfg.catalogRate > 0 && cfg.swap:
		return fmt.Errorf("bench serve: -catalog-rate and -swap measure one thing at a time")
	case cfg.ranking != "" && cfg.rankingCycle <= 0:
		return fmt.Errorf("bench serve: -ranking-cycle is %v, want more than 0", cfg.rankingCycle)
	}
	return nil
}

// benchStage publishes version 1 (and, for -swap, version 2) of the synthetic
// model into a staging registry under dir, or reuses the versions an earlier
// run with the same options left there. Linking a complete version directory
// into the served registry is the last step of a publish (the rename), so the
// swap measures the server, not the writing of the files.
func benchStage(cfg benchConfig, dir string, log func(string, ...any)) (staged []string, err error) {
	staging, err := registry.Open(filepath.Join(dir, cfg.stagingName()))
	if err != nil {
		return nil, err
	}
	have, err := staging.Versions(benchModel)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, err
	}
	count := 1
	if cfg.swap {
		count = 2
	}
	for i := range count {
		if i < len(have) {
			log("bench: version %s: reused from %s", have[i], staging.Root())
			staged = append(staged, filepath.Join(staging.Root(), benchModel, have[i]))
			continue
		}
		t0 := time.Now()
		o := cfg.gen
		o.Seed += uint64(i)
		b := genBundle(benchModel, o)
		gen := time.Since(t0)
		if cfg.prebuild {
			if err := prebuildIndex(b); err != nil {
				return nil, err
			}
		}
		built := time.Since(t0) - gen
		v, err := staging.Publish(b)
		if err != nil {
			return nil, err
		}
		log("bench: version %s: generated in %s, graph prebuilt in %s, written in %s", v, gen.Round(time.Millisecond),
			built.Round(time.Millisecond), (time.Since(t0) - gen - built).Round(time.Millisecond))
		staged = append(staged, filepath.Join(staging.Root(), benchModel, v))
	}
	return staged, nil
}

// stagingLayout is bumped whenever the code changes what a staged version
// holds (2: items in the graph's locality order).
const stagingLayout = 2

// stagingName names the staging registry after everything that shapes the
// synthetic versions, so only identical ones are reused.
func (c benchConfig) stagingName() string {
	g := c.gen
	return fmt.Sprintf("staging%d-u%d-i%d-d%d-c%d-noise%g-cat%d-seen%d-seed%d-prebuild%t", stagingLayout,
		g.Users, g.Items, g.Dim, g.Clusters, g.Noise, g.Categories, g.Seen, g.Seed, c.prebuild)
}

// rawBytes is the size of one version's embedding matrices.
func (c benchConfig) rawBytes() int64 {
	return int64(c.gen.Users+c.gen.Items) * int64(c.gen.Dim) * 4
}

// publishVersion makes a staged version visible in the served registry: its
// files are hard-linked into a temporary directory (registry files are never
// rewritten), which is then renamed into place.
func publishVersion(staged, registryDir string) error {
	modelDir := filepath.Join(registryDir, benchModel)
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(modelDir, ".bench-")
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(staged)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Link(filepath.Join(staged, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			return err
		}
	}
	return os.Rename(tmp, filepath.Join(modelDir, filepath.Base(staged)))
}
