package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/sampledata"
	"github.com/recserve/recserve/trainer"
)

// sampleFiles writes a small generated interaction log and catalog.
func sampleFiles(t *testing.T) (events, items string) {
	t.Helper()
	dir := t.TempDir()
	data := sampledata.Generate(sampledata.Options{Users: 400, Items: 300, Seed: 5})
	events, items = filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "items.jsonl")
	if err := writeFile(events, data.WriteEvents); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(items, data.WriteItems); err != nil {
		t.Fatal(err)
	}
	return events, items
}

func smallOptions(j *publishJob) {
	j.Options.Factors, j.Options.Iterations = 16, 4
}

func TestTrainValidationAndGate(t *testing.T) {
	events, items := sampleFiles(t)
	reg := t.TempDir()
	ctx := context.Background()
	job := publishJob{Registry: reg, Model: "m", Validation: 0.2, K: 20, Options: trainer.DefaultOptions()}
	smallOptions(&job)
	v1, err := trainFile(ctx, events, items, job)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := registry.Open(reg)
	b, err := r.Load("m", v1)
	if err != nil {
		t.Fatal(err)
	}
	good := b.Manifest.Metrics["val_recall"]
	if good <= 0 || b.Manifest.Metrics["val_ndcg"] <= 0 || b.Manifest.Params["factors"] != "16" {
		t.Fatalf("manifest metrics %v params %v", b.Manifest.Metrics, b.Manifest.Params)
	}
	if c := b.Catalog(); c.CategoryName(c.Category(0)) == "" {
		t.Fatal("catalog metadata not published")
	}
	// The version carries its HNSW graph, and it is the graph of its vectors.
	if _, err := index.ReadHNSW(bytes.NewReader(b.Index), b.ItemVectors, b.Manifest.Dim); err != nil {
		t.Fatalf("prebuilt index of the published version: %v", err)
	}

	// A much worse model (one factor, no training sweeps) is refused by the gate.
	bad := job
	bad.Gate = true
	bad.Options.Factors, bad.Options.Iterations = 1, 0
	if _, err := trainFile(ctx, events, items, bad); !errors.Is(err, errGate) {
		t.Fatalf("worse model: %v, want the gate to refuse it", err)
	}
	if versions, _ := r.Versions("m"); len(versions) != 1 {
		t.Fatalf("gate let a version through: %v", versions)
	}
	// The same model as stable passes, and a tolerance lets a worse one pass.
	same := job
	same.Gate = true
	if _, err := trainFile(ctx, events, items, same); err != nil {
		t.Fatalf("equal model refused: %v", err)
	}
	bad.GateTolerance = 1
	if _, err := trainFile(ctx, events, items, bad); err != nil {
		t.Fatalf("tolerance 1 refused: %v", err)
	}
}

func TestTuneCommand(t *testing.T) {
	events, _ := sampleFiles(t)
	reg := t.TempDir()
	var out bytes.Buffer
	err := tuneCmd(context.Background(), []string{"-input", events, "-registry", reg, "-model", "t", "-publish",
		"-iterations", "3", "-grid-factors", "2,16", "-grid-reg", "0.003,0.03"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "val_recall"); lines != 4 {
		t.Fatalf("%d result lines, want one per setting (4):\n%s", lines, out.String())
	}
	r, _ := registry.Open(reg)
	v, err := r.Latest("t")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Load("t", v)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Params["factors"] != "16" || b.Manifest.Metrics["val_recall"] <= 0 {
		t.Fatalf("published %v %v; want the better setting (16 factors) with its validation recall", b.Manifest.Params, b.Manifest.Metrics)
	}
}

func TestPrebuildIndexReordersItems(t *testing.T) {
	o := genOptions{Users: 50, Items: 3000, Dim: 16, Clusters: 30, Noise: 0.1, Categories: 4, Seen: 3, Seed: 2}
	b, orig := genBundle("m", o), genBundle("m", o)
	if err := prebuildIndex(b); err != nil {
		t.Fatal(err)
	}
	moved := 0
	origRow := orig.ItemRows()
	for i, it := range b.Items {
		r, _ := origRow.Row(it.ID)
		if int(r) != i {
			moved++
		}
		if !slices.Equal(b.ItemVectors[i*o.Dim:(i+1)*o.Dim], orig.ItemVectors[int(r)*o.Dim:int(r+1)*o.Dim]) || it.Category != orig.Items[r].Category || it.Available != orig.Items[r].Available {
			t.Fatalf("item %s changed when it moved from row %d to %d", it.ID, r, i)
		}
	}
	if moved < o.Items/2 {
		t.Errorf("%d of %d items moved; the locality order should move most of this catalog (clusters interleaved)", moved, o.Items)
	}
	for u := range o.Users {
		var got, want []string
		for _, it := range b.Seen(u) {
			got = append(got, b.Items[it].ID)
		}
		for _, it := range orig.Seen(u) {
			want = append(want, orig.Items[it].ID)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("user %d saw %v, want %v", u, got, want)
		}
	}
	h, err := index.ReadHNSW(bytes.NewReader(b.Index), b.ItemVectors, o.Dim)
	if err != nil {
		t.Fatalf("the graph does not load over the reordered vectors: %v", err)
	}
	exact := index.NewExact(b.ItemVectors, o.Dim)
	hits := 0
	for u := range o.Users {
		q := b.UserVectors[u*o.Dim : (u+1)*o.Dim]
		want := map[int32]bool{}
		for _, r := range exact.Search(q, 10, nil) {
			want[r.ID] = true
		}
		for _, r := range h.Search(q, 10, nil) {
			if want[r.ID] {
				hits++
			}
		}
	}
	if recall := float64(hits) / float64(10*o.Users); recall < 0.95 {
		t.Errorf("recall@10 of the prebuilt graph over the reordered items = %.3f, want >= 0.95", recall)
	}
}
