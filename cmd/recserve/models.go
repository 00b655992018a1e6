package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

const modelsUsage = `Usage: recserve models <action> [flags] [MODEL]

Actions:
  list                                   every served model with versions, labels and traffic
  get MODEL                              one model with per-version live metrics and the rollout log
  canary MODEL -version V -percent P     send P% of users (sticky) to version V; -shadow F mirrors a
                                         fraction of stable traffic; -steps 5,25,50,100 -hold 10m
                                         starts an automatic rollout (-min-impressions, -margin, -alpha,
                                         -max-error-rate, -max-p99-ratio)
  promote MODEL                          make the canary stable
  rollback MODEL [-reason R]             send everyone back to stable
  pin MODEL -version V [-stable]         keep V loaded (and serve it as stable); -version "" unpins
  ranking MODEL -json '{...}'            the model's default re-ranking, a recserve.v1.Ranking in JSON,
                                         e.g. '{"maxPerCategory":2,"explorationShare":0.1}'; '{}' clears it

Every action takes -addr (default 127.0.0.1:9090) and -timeout (default 10s).
`

func runModels(ctx context.Context, args []string) error { return modelsCmd(ctx, args, os.Stdout) }

// modelsCmd runs one admin action and prints the answer as JSON to w.
func modelsCmd(ctx context.Context, args []string, w io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, modelsUsage)
		return flag.ErrHelp
	}
	action, args := args[0], args[1:]
	fs := flag.NewFlagSet("models "+action, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9090", "gRPC address of a recserve server")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of the call")
	version := fs.String("version", "", "model version")
	percent := fs.Float64("percent", 0, "canary share of users, 0 to 100")
	shadow := fs.Float64("shadow", 0, "fraction of stable requests mirrored to the canary, 0 to 1")
	steps := fs.String("steps", "", "automatic rollout steps in percent, e.g. 5,25,50,100")
	hold := fs.Duration("hold", 10*time.Minute, "how long each rollout step is held before it is judged")
	minImp := fs.Int64("min-impressions", 1000, "impressions per version before a step is judged")
	margin := fs.Float64("margin", 0.005, "how much lower the canary's CTR may be (absolute)")
	alpha := fs.Float64("alpha", 0.05, "significance level of the non-inferiority test")
	maxErr := fs.Float64("max-error-rate", 0.01, "highest canary error rate")
	maxP99 := fs.Float64("max-p99-ratio", 2, "highest canary p99 latency relative to stable")
	stable := fs.Bool("stable", false, "with pin: also serve the version as stable")
	reason := fs.String("reason", "", "with rollback: why")
	rankingJSON := fs.String("json", "", "with ranking: the default re-ranking as JSON of recserve.v1.Ranking ('{}' clears it)")
	model, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if action != "list" && model == "" {
		return fmt.Errorf("models %s: the model name is required", action)
	}

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	admin := recservev1.NewModelAdminServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var resp proto.Message
	switch action {
	case "list":
		resp, err = admin.ListModels(ctx, &recservev1.ListModelsRequest{})
	case "get":
		resp, err = admin.GetModel(ctx, &recservev1.GetModelRequest{Model: model})
	case "canary":
		req := &recservev1.SetCanaryRequest{Model: model, Version: *version, Percent: *percent, ShadowFraction: *shadow}
		if *steps != "" {
			p := &recservev1.RolloutPolicy{HoldSeconds: hold.Seconds(), MinImpressions: *minImp, CtrMargin: *margin,
				Alpha: *alpha, MaxErrorRate: *maxErr, MaxP99Ratio: *maxP99}
			for _, s := range strings.Split(*steps, ",") {
				v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if err != nil {
					return fmt.Errorf("-steps: %q is not a number", s)
				}
				p.Steps = append(p.Steps, v)
			}
			req.Policy = p
		}
		resp, err = admin.SetCanary(ctx, req)
	case "promote":
		resp, err = admin.Promote(ctx, &recservev1.PromoteRequest{Model: model})
	case "rollback":
		resp, err = admin.Rollback(ctx, &recservev1.RollbackRequest{Model: model, Reason: *reason})
	case "pin":
		resp, err = admin.Pin(ctx, &recservev1.PinRequest{Model: model, Version: *version, Stable: *stable})
	case "ranking":
		r := new(recservev1.Ranking)
		if err := protojson.Unmarshal([]byte(*rankingJSON), r); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
		resp, err = admin.SetRanking(ctx, &recservev1.SetRankingRequest{Model: model, Ranking: r})
	default:
		fmt.Fprint(os.Stderr, modelsUsage)
		return fmt.Errorf("models: unknown action %q", action)
	}
	if err != nil {
		return err
	}
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// parseInterspersed parses flags that may come before or after one positional
// argument, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) (string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) > 1 {
		return "", fmt.Errorf("unexpected arguments %v", positional[1:])
	}
	if len(positional) == 0 {
		return "", nil
	}
	return positional[0], nil
}
