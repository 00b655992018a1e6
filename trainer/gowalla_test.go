package trainer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGowalla trains DefaultOptions on the LightGCN Gowalla split and
// reports recall@20 and NDCG@20. It is a benchmark, not a pass/fail check,
// and is skipped unless RECSERVE_GOWALLA names the directory holding
// train.txt.gz and test.txt.gz. With RECSERVE_GOWALLA_SPLIT=validation it
// instead holds out 20% of each user's training items (seed 42) and
// evaluates on those, the split the defaults were tuned on.
//
//	RECSERVE_GOWALLA=/work/shared/datasets/gowalla go test -run TestGowalla -v -timeout 30m ./trainer/
func TestGowalla(t *testing.T) {
	dir := os.Getenv("RECSERVE_GOWALLA")
	if dir == "" {
		t.Skip("RECSERVE_GOWALLA not set")
	}
	start := time.Now()
	train := NewDataset()
	if err := ReadFile(filepath.Join(dir, "train.txt.gz"), train); err != nil {
		t.Fatal(err)
	}
	var test *Dataset
	split := os.Getenv("RECSERVE_GOWALLA_SPLIT")
	switch split {
	case "validation":
		train, test = train.Split(0.2, 42)
	case "", "test":
		split = "test"
		test = NewHeldOut(train)
		if err := ReadFile(filepath.Join(dir, "test.txt.gz"), test); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("RECSERVE_GOWALLA_SPLIT=%q: want validation or test", split)
	}
	t.Logf("read %d users, %d items, %d train and %d %s pairs in %v",
		train.NumUsers(), train.NumItems(), train.NumInteractions(), test.NumInteractions(), split, time.Since(start).Round(time.Millisecond))

	opts := DefaultOptions()
	start = time.Now()
	m, err := Train(context.Background(), train, opts)
	if err != nil {
		t.Fatal(err)
	}
	trainTime := time.Since(start)
	start = time.Now()
	got := Evaluate(m, train, test, 20)
	t.Logf("%s: recall@20 %.4f ndcg@20 %.4f over %d users; train %v, evaluate %v; options %+v",
		split, got.RecallAtK, got.NDCGAtK, got.Users, trainTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), opts)
}
