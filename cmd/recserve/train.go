package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/recserve/recserve/index"
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
	fs.IntVar(&o.CGSteps, "cg-steps", o.CGSteps, "conjugate-gradient steps per row update (0: exact Cholesky solves)")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "random seed")
	fs.IntVar(&o.Workers, "workers", o.Workers, "parallel solvers (0: all cores)")
	return &o
}

// publishJob trains on a data set and publishes the model as a new version.
type publishJob struct {
	Registry string
	Model    string
	Catalog  []registry.Item
	Options  trainer.Options
	// Validation, when above 0, holds out this fraction of each user's items,
	// trains on the rest and records recall and ndcg at K on them in the manifest
	// ("val_recall", "val_ndcg"); the published model is then trained on all data.
	Validation float64
	K          int
	// Gate refuses to publish a model whose val_recall is below the stable
	// version's by more than GateTolerance.
	Gate          bool
	GateTolerance float64
	// Metrics are recorded in the manifest as they are (tune passes its
	// validation results); run adds what it measures to the map, when there is
	// one, so that the caller sees the manifest's metrics.
	Metrics map[string]float64
}

// errGate is returned when the evaluation gate refuses a model.
var errGate = errors.New("evaluation gate: the new model is worse than the stable version")

// publishFlags registers the flags of a publishJob other than Options and Catalog.
func publishFlags(fs *flag.FlagSet, j *publishJob) {
	fs.StringVar(&j.Registry, "registry", "./registry-data", registryUsage)
	fs.StringVar(&j.Model, "model", "default", "model name")
	fs.Float64Var(&j.Validation, "validation", 0, "fraction of each user's items held out to measure the model before publishing (0: none)")
	fs.IntVar(&j.K, "k", 20, "cut-off K of the validation metrics")
	fs.BoolVar(&j.Gate, "gate", false, "refuse to publish when validation recall is below the stable version's (needs -validation)")
	fs.Float64Var(&j.GateTolerance, "gate-tolerance", 0, "how much lower than stable's validation recall still passes the gate")
}

// run trains, validates, gates and publishes; it returns the new version.
func (j publishJob) run(ctx context.Context, d *trainer.Dataset) (string, error) {
	metrics := j.Metrics
	if metrics == nil {
		metrics = map[string]float64{}
	}
	if j.Validation > 0 {
		tr, val := d.Split(j.Validation, uint64(j.Options.Seed))
		m, err := trainer.Train(ctx, tr, j.Options)
		if err != nil {
			return "", err
		}
		met := trainer.Evaluate(m, tr, val, j.K)
		metrics["val_recall"], metrics["val_ndcg"], metrics["val_k"] = met.RecallAtK, met.NDCGAtK, float64(j.K)
		if j.Gate {
			if err := j.checkGate(met.RecallAtK); err != nil {
				return "", err
			}
		}
	} else if j.Gate {
		return "", errors.New("-gate needs -validation")
	}
	start := time.Now()
	m, err := trainer.Train(ctx, d, j.Options)
	if err != nil {
		return "", err
	}
	metrics["train_seconds"] = time.Since(start).Seconds()
	metrics["interactions"] = float64(d.NumInteractions())
	b := trainer.Bundle(d, m, j.Catalog)
	b.Manifest.Model = j.Model
	b.Manifest.Metrics = metrics
	b.Manifest.Params = j.Options.Params()
	start = time.Now()
	if err := prebuildIndex(b); err != nil {
		return "", err
	}
	metrics["index_build_seconds"] = time.Since(start).Seconds()
	reg, err := registry.OpenURL(context.Background(), j.Registry)
	if err != nil {
		return "", err
	}
	defer reg.Close()
	return reg.Publish(b)
}

// checkGate compares a validation recall with the stable version's: the version
// the rollout state labels stable, else the newest one.
func (j publishJob) checkGate(recall float64) error {
	reg, err := registry.OpenURL(context.Background(), j.Registry)
	if err != nil {
		return err
	}
	defer reg.Close()
	stable, err := reg.Latest(j.Model)
	if errors.Is(err, registry.ErrNotFound) {
		return nil // nothing to compare with
	}
	if err != nil {
		return err
	}
	if data, err := reg.ReadState(j.Model); err == nil && data != nil {
		var st struct {
			Stable string `json:"stable"`
		}
		if json.Unmarshal(data, &st) == nil && st.Stable != "" {
			stable = st.Stable
		}
	}
	b, err := reg.Load(j.Model, stable)
	if err != nil {
		return fmt.Errorf("evaluation gate: load stable version %s: %w", stable, err)
	}
	old, ok := b.Manifest.Metrics["val_recall"]
	if !ok {
		return nil // the stable version recorded no validation metrics
	}
	if recall < old-j.GateTolerance {
		return fmt.Errorf("%w: val_recall %.4f < %.4f of version %s (tolerance %.4f)", errGate, recall, old, stable, j.GateTolerance)
	}
	return nil
}

func runTrain(ctx context.Context, args []string) error {
	var job publishJob
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	input := fs.String("input", "", "interaction file (LightGCN \"uid item item ...\" or .jsonl events; .gz ok)")
	items := fs.String("items", "", "optional item catalog (items.jsonl: id, category, available, attributes)")
	publishFlags(fs, &job)
	opts := trainFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *input == "" {
		return fmt.Errorf("-input is required")
	}
	job.Options = *opts
	version, err := trainFile(ctx, *input, *items, job)
	if err != nil {
		return err
	}
	fmt.Printf("published %s version %s to %s\n", job.Model, version, job.Registry)
	return nil
}

// trainFile reads an interaction file and an optional catalog and runs job on them.
func trainFile(ctx context.Context, input, items string, job publishJob) (string, error) {
	d := trainer.NewDataset()
	if err := trainer.ReadFile(input, d); err != nil {
		return "", err
	}
	if items != "" {
		var err error
		if job.Catalog, err = readCatalog(items); err != nil {
			return "", err
		}
	}
	return job.run(ctx, d)
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

// prebuildIndex builds the HNSW graph a server would build for b (default
// options, every core), stores b's items in the graph's locality order, in
// which searches miss the cache less (BENCHMARKS.md), and sets b.Index to the
// encoded graph, which servers load instead of building one.
func prebuildIndex(b *registry.Bundle) error {
	h, err := index.NewHNSW(b.ItemVectors, b.Manifest.Dim, index.Options{})
	if err != nil {
		return err
	}
	order := h.LocalityOrder()
	if err := b.ReorderItems(order); err != nil {
		return err
	}
	if h, err = h.Renumber(order, b.ItemVectors); err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := h.WriteTo(&buf); err != nil {
		return err
	}
	b.Index = buf.Bytes()
	return nil
}
