package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/trainer"
)

// trainFlags registers the training hyperparameters, defaulting to trainer.DefaultOptions.
func trainFlags(fs *flag.FlagSet) *trainer.Options {
	o := trainer.DefaultOptions()
	fs.IntVar(&o.Factors, "factors", o.Factors, "embedding dimensions")
	fs.IntVar(&o.Iterations, "iterations", o.Iterations, "ALS sweeps")
	fs.Float64Var(&o.Reg, "reg", o.Reg, "regularization")
	fs.Float64Var(&o.Alpha, "alpha", o.Alpha, "confidence scale of observed interactions")
	fs.Float64Var(&o.Unobserved, "unobserved", o.Unobserved, "weight of unobserved items")
	fs.Float64Var(&o.RegExponent, "reg-exponent", o.RegExponent, "frequency scaling exponent of the regularization")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "random seed")
	fs.IntVar(&o.Workers, "workers", o.Workers, "parallel solvers (0: all cores)")
	return &o
}

// trainJob is one training run that publishes a version.
type trainJob struct {
	Input    string // interactions: LightGCN text or JSON lines, optionally .gz
	Items    string // optional catalog in items.jsonl format
	Registry string
	Model    string
	Options  trainer.Options
}

func runTrain(ctx context.Context, args []string) error {
	var job trainJob
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.StringVar(&job.Input, "input", "", "interaction file (LightGCN \"uid item item ...\" or .jsonl events; .gz ok)")
	fs.StringVar(&job.Items, "items", "", "optional item catalog (items.jsonl: id, category, available, attributes)")
	fs.StringVar(&job.Registry, "registry", "./registry-data", "registry root directory")
	fs.StringVar(&job.Model, "model", "default", "model name")
	opts := trainFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if job.Input == "" {
		return fmt.Errorf("-input is required")
	}
	job.Options = *opts
	version, err := job.run(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("published %s version %s to %s\n", job.Model, version, job.Registry)
	return nil
}

// run trains on the input and publishes the result.
func (j trainJob) run(ctx context.Context) (string, error) {
	d := trainer.NewDataset()
	if err := trainer.ReadFile(j.Input, d); err != nil {
		return "", err
	}
	var catalog []registry.Item
	if j.Items != "" {
		var err error
		if catalog, err = readCatalog(j.Items); err != nil {
			return "", err
		}
	}
	start := time.Now()
	m, err := trainer.Train(ctx, d, j.Options)
	if err != nil {
		return "", err
	}
	b := trainer.Bundle(d, m, catalog)
	b.Manifest.Model = j.Model
	b.Manifest.Metrics = map[string]float64{"train_seconds": time.Since(start).Seconds()}
	b.Manifest.Params = j.Options.Params()
	reg, err := registry.Open(j.Registry)
	if err != nil {
		return "", err
	}
	return reg.Publish(b)
}

func readCatalog(path string) ([]registry.Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var items []registry.Item
	dec := json.NewDecoder(f)
	for line := 1; dec.More(); line++ {
		it := registry.Item{Available: true}
		if err := dec.Decode(&it); err != nil {
			return nil, fmt.Errorf("%s: item %d: %w", path, line, err)
		}
		items = append(items, it)
	}
	return items, nil
}

func runEval(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	trainPath := fs.String("train", "", "training interactions")
	testPath := fs.String("test", "", "held-out interactions")
	k := fs.Int("k", 20, "cut-off K")
	opts := trainFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *trainPath == "" || *testPath == "" {
		return fmt.Errorf("-train and -test are required")
	}
	train := trainer.NewDataset()
	if err := trainer.ReadFile(*trainPath, train); err != nil {
		return err
	}
	test := trainer.NewHeldOut(train)
	if err := trainer.ReadFile(*testPath, test); err != nil {
		return err
	}
	start := time.Now()
	m, err := trainer.Train(ctx, train, *opts)
	if err != nil {
		return err
	}
	trainSec := time.Since(start).Seconds()
	start = time.Now()
	met := trainer.Evaluate(m, train, test, *k)
	out := struct {
		trainer.Metrics
		TrainSeconds float64 `json:"train_seconds"`
		EvalSeconds  float64 `json:"eval_seconds"`
	}{met, trainSec, time.Since(start).Seconds()}
	return json.NewEncoder(os.Stdout).Encode(out)
}
