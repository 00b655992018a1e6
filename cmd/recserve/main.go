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
)

const usage = `recserve — recommendation serving

Usage:
  recserve serve  [flags]   serve models from a registry over gRPC and REST
  recserve train  [flags]   train embeddings from an interaction file and publish a version
  recserve eval   [flags]   train on one file, report recall@K and ndcg@K on another
  recserve demo   [flags]   generate sample data, train, publish and serve it
  recserve models <action>  list, inspect, canary, promote, roll back and pin model versions

Run "recserve <command> -h" for the flags of a command.
`

var commands = map[string]func(ctx context.Context, args []string) error{
	"serve":  runServe,
	"train":  runTrain,
	"eval":   runEval,
	"demo":   runDemo,
	"models": runModels,
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
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
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
