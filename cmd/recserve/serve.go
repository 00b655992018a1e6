package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/internal/daemon"
	"github.com/recserve/recserve/internal/gcpace"
	"github.com/recserve/recserve/internal/memlimit"
)

// serveFlags registers the flags shared by serve and demo. The returned function
// finishes the configuration after parsing; the collector's pacing it starts
// runs until ctx is done.
func serveFlags(fs *flag.FlagSet, cfg *daemon.Config) func(ctx context.Context) error {
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:9090", "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", `REST gateway listen address ("off" disables it)`)
	fs.StringVar(&cfg.DefaultModel, "default-model", "", "model for requests that name none (default: the only served model)")
	fs.DurationVar(&cfg.PollInterval, "poll", 2*time.Second, "how often to check the registry for new versions")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may take at shutdown")
	cfg.Index.Kind = index.KindHNSW
	fs.Func("index", "index backend: hnsw (default), exact or coder", func(s string) error {
		switch k := index.Kind(s); k {
		case index.KindHNSW, index.KindExact, index.KindCoder:
			cfg.Index.Kind = k
			return nil
		}
		return fmt.Errorf("unknown index %q (want hnsw, exact or coder)", s)
	})
	fs.IntVar(&cfg.Index.EfSearch, "ef-search", 0, "HNSW search breadth (0: the index default)")
	fs.StringVar(&cfg.RedisAddr, "redis", "", "Redis address for real-time state and the response cache (empty: in process)")
	fs.DurationVar(&cfg.CacheTTL, "cache-ttl", 30*time.Second, "how long Recommend responses are cached (negative: off)")
	fs.Func("kafka", "comma-separated Kafka brokers of the event stream", func(s string) error {
		cfg.KafkaBrokers = strings.Split(s, ",")
		return nil
	})
	fs.StringVar(&cfg.Topic, "topic", "interactions", "Kafka topic of interaction events")
	fs.StringVar(&cfg.CatalogTopic, "catalog-topic", "catalog", "Kafka topic of catalog changes and user erasures")
	fs.StringVar(&cfg.CatalogDir, "catalog-dir", "./catalog-data", "directory of the run-time catalog file, read back at restart (unused with -redis, which keeps it; empty: memory only)")
	gogc := fs.Int("gogc", defaultGOGC, "garbage collector target percentage (see GOGC); a set GOGC environment variable wins unless this flag is given")
	memLimit := fs.Int64("memory-limit-mib", -1, "load no version that would take the process past nine tenths of this many MiB, keeping the served ones, and set the Go runtime's memory limit to 95% of it unless GOMEMLIMIT is set (-1: the memory limit of the process's cgroup, as Kubernetes sets it; 0: none)")
	headroom := fs.Uint64("gc-headroom-mib", 128, "collect once the heap has grown this many MiB beyond what is live, or by the -gogc percentage if that comes first (0: the percentage only)")
	finishSecurity := securityFlags(fs, &cfg.Security)
	return func(ctx context.Context) error {
		if pct, ok := gcPercent(isSet(fs, "gogc"), *gogc, os.Getenv("GOGC")); ok {
			debug.SetGCPercent(pct)
		}
		if err := finishSecurity(); err != nil {
			return err
		}
		switch {
		case *memLimit == -1:
			cfg.MemoryLimit = memlimit.Cgroup()
		case *memLimit >= 0:
			cfg.MemoryLimit = *memLimit << 20
		default:
			return fmt.Errorf("-memory-limit-mib %d: want -1, 0 or a size", *memLimit)
		}
		if soft, ok := softMemoryLimit(cfg.MemoryLimit, os.Getenv("GOMEMLIMIT")); ok {
			debug.SetMemoryLimit(soft)
		}
		go gcpace.Run(ctx, *headroom<<20, time.Second)
		return nil
	}
}

// defaultGOGC: the heap of a server is mostly model data that never becomes
// garbage, and the heap may grow to (1 + GOGC/100) times what is live, so the
// Go default of 100 nearly doubles resident memory. Requests allocate little,
// so collecting more often costs little CPU.
const defaultGOGC = 25

// softMemoryLimit is the Go runtime's memory limit for a process limited to
// limit bytes: 95% of it, so that the collector works harder before the
// kernel refuses memory. None without a limit or when GOMEMLIMIT is set.
func softMemoryLimit(limit int64, env string) (int64, bool) {
	if limit <= 0 || env != "" {
		return 0, false
	}
	return limit - limit/20, true
}

// gcPercent decides the GC percentage to set: the flag's value when it was
// given or when the GOGC environment variable is not set.
func gcPercent(flagSet bool, flagValue int, env string) (int, bool) {
	if flagSet || env == "" {
		return flagValue, true
	}
	return 0, false
}

func runServe(ctx context.Context, args []string) error {
	var cfg daemon.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Registry, "registry", "./registry-data", registryUsage)
	models := fs.String("models", "", "comma-separated models to serve (default: every model in the registry)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (written at shutdown)")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file at shutdown")
	finish := serveFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := finish(ctx); err != nil {
		return err
	}
	if *models != "" {
		cfg.Models = strings.Split(*models, ",")
	}
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	err = daemon.Run(ctx, cfg, nil)
	if *memProfile != "" {
		if perr := writeHeapProfile(*memProfile); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

// startCPUProfile profiles this process's CPU into path until stop is called;
// with an empty path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
