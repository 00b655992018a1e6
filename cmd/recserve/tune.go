package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/recserve/recserve/trainer"
)

// runTune searches hyperparameters on a validation split of the input — never on
// a test file — prints one JSON line per setting and the best, and with -publish
// retrains the best setting on all of the input and publishes it.
func runTune(ctx context.Context, args []string) error { return tuneCmd(ctx, args, os.Stdout) }

// tuneCmd is runTune writing its results to w.
func tuneCmd(ctx context.Context, args []string, w io.Writer) error {
	var job publishJob
	fs := flag.NewFlagSet("tune", flag.ContinueOnError)
	input := fs.String("input", "", "interaction file (LightGCN text or .jsonl events; .gz ok)")
	items := fs.String("items", "", "optional item catalog for -publish")
	publishFlags(fs, &job)
	publish := fs.Bool("publish", false, "retrain the best setting on all of the input and publish it")
	base := trainFlags(fs)
	grid := make([]*string, len(gridFlags))
	for i, name := range gridFlags {
		grid[i] = fs.String(name, "", "comma-separated values to try for -"+strings.TrimPrefix(name, "grid-"))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *input == "" {
		return fmt.Errorf("-input is required")
	}
	if job.Validation <= 0 {
		job.Validation = 0.2
	}
	settings, err := expandGrid(*base, grid)
	if err != nil {
		return err
	}
	d := trainer.NewDataset()
	if err := trainer.ReadFile(*input, d); err != nil {
		return err
	}
	tr, val := d.Split(job.Validation, uint64(base.Seed))
	enc := json.NewEncoder(w)
	type result struct {
		Params       map[string]string `json:"params"`
		Recall       float64           `json:"val_recall"`
		NDCG         float64           `json:"val_ndcg"`
		TrainSeconds float64           `json:"train_seconds"`
		opts         trainer.Options
	}
	var best *result
	for _, o := range settings {
		start := time.Now()
		m, err := trainer.Train(ctx, tr, o)
		if err != nil {
			return err
		}
		met := trainer.Evaluate(m, tr, val, job.K)
		r := &result{Params: o.Params(), Recall: met.RecallAtK, NDCG: met.NDCGAtK, TrainSeconds: time.Since(start).Seconds(), opts: o}
		if err := enc.Encode(r); err != nil {
			return err
		}
		if best == nil || r.Recall > best.Recall {
			best = r
		}
	}
	fmt.Fprintf(w, "best: %s\n", mustJSON(best.Params))
	if !*publish {
		return nil
	}
	job.Options, job.Validation = best.opts, 0
	job.Metrics = map[string]float64{"val_recall": best.Recall, "val_ndcg": best.NDCG, "val_k": float64(job.K)}
	if job.Gate {
		if err := job.checkGate(best.Recall); err != nil {
			return err
		}
		job.Gate = false
	}
	if *items != "" {
		if job.Catalog, err = readCatalog(*items); err != nil {
			return err
		}
	}
	version, err := job.run(ctx, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "published %s version %s to %s\n", job.Model, version, job.Registry)
	return nil
}

// gridFlags name the searchable options; gridSetters set them, in the same order.
var (
	gridFlags   = []string{"grid-factors", "grid-iterations", "grid-reg", "grid-unobserved", "grid-alpha", "grid-reg-exponent"}
	gridSetters = []func(o *trainer.Options, v float64){
		func(o *trainer.Options, v float64) { o.Factors = int(v) },
		func(o *trainer.Options, v float64) { o.Iterations = int(v) },
		func(o *trainer.Options, v float64) { o.Reg = v },
		func(o *trainer.Options, v float64) { o.Unobserved = v },
		func(o *trainer.Options, v float64) { o.Alpha = v },
		func(o *trainer.Options, v float64) { o.RegExponent = v },
	}
)

// expandGrid returns every combination of the grid values (lists parallel to
// gridFlags) over base.
func expandGrid(base trainer.Options, grid []*string) ([]trainer.Options, error) {
	settings := []trainer.Options{base}
	for i, list := range grid {
		name := gridFlags[i]
		if *list == "" {
			continue
		}
		var next []trainer.Options
		for _, field := range strings.Split(*list, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
			if err != nil {
				return nil, fmt.Errorf("-%s: %q is not a number", name, field)
			}
			for _, o := range settings {
				gridSetters[i](&o, v)
				if err := o.Validate(); err != nil {
					return nil, fmt.Errorf("-%s %v: %w", name, v, err)
				}
				next = append(next, o)
			}
		}
		settings = next
	}
	return settings, nil
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
