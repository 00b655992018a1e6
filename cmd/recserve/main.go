// Command recserve is the recserve binary: serve, train, eval and demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/recserve/recserve/logs"
	"github.com/recserve/recserve/registry"
)

const usage = `recserve — recommendation serving

Usage:
  recserve serve  [flags]   serve models from a registry over gRPC and REST
  recserve train  [flags]   train embeddings from an interaction file and publish a version
  recserve trainer [flags]  consume events into a durable log, retrain and publish versions as they come
  recserve eval   [flags]   train on one file, report recall@K and ndcg@K on another
  recserve tune   [flags]   search hyperparameters on a validation split, optionally publish the best
  recserve demo   [flags]   generate sample data, train, publish and serve it
  recserve models <action>  list, inspect, canary, promote, roll back and pin model versions
  recserve apikey [flags]   make an API key and the line that configures it
  recserve bench serve [flags]  load-test "recserve serve" on a synthetic model: rps, latency, memory, hot swap

Client commands (call a running server, print JSON):
  recserve recommend -user U [-n 10] [-model M] [-addr 127.0.0.1:9090]   a user's recommendations
  recserve similar   -item I [-n 10] [-model M] [-addr 127.0.0.1:9090]   items similar to an item
  recserve events    -user U -item I -type purchase [-addr ...]         record an interaction event
  recserve items upsert -id I [-category C] [-attr k=v] [-unavailable]   add or replace an item; -file F: many
  recserve items available -id I[,I...] [-false]                         mark items available (-false: unavailable)
  recserve items delete -id I[,I...]                                     delete items
  recserve items get -id I [-model M]                                    an item as the server serves it
  recserve users erase -user U                                           erase a user's data (admin role)
  (TLS servers: -cacert ca.pem or -tls, -cert/-key for mTLS; credentials from $RECSERVE_API_KEY or $RECSERVE_TOKEN)

Run "recserve <command> -h" for the flags of a command.
`

var commands = map[string]func(ctx context.Context, args []string) error{
	"serve":  runServe,
	"train":  runTrain,
	"eval":   runEval,
	"tune":   runTune,
	"demo":   runDemo,
	"models": runModels,
	"apikey": runAPIKey,
	"bench":  runBench,

	"trainer":   runTrainer,
	"recommend": runRecommend,
	"similar":   runSimilar,
	"events":    runEvents,
	"items":     runItems,
	"users":     runUsers,
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		if os.Args[1] != "-h" && os.Args[1] != "--help" && os.Args[1] != "help" {
			fmt.Fprintf(os.Stderr, "recserve: unknown command %q\n\n", os.Args[1])
		}
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	slog.SetDefault(logs.NewJSON(os.Stderr, slog.LevelInfo))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "recserve %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// registryUsage documents the -registry flag of every command that has it.
const registryUsage = "registry: a directory, or s3://bucket/prefix with the endpoint and credentials in " +
	registry.EnvS3Endpoint + ", " + registry.EnvS3PathStyle + ", " + registry.EnvAccessKey + ", " +
	registry.EnvSecretKey + " and " + registry.EnvRegion
