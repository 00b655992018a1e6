package trainer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// plantedDataset returns users in clusters that mostly interact with the
// items of their own cluster, plus some globally popular items.
func plantedDataset(seed uint64, users, items, clusters, perUser int) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 11))
	zipf := rand.NewZipf(rng, 1.2, 1, uint64(items-1))
	d := NewDataset()
	per := items / clusters
	for u := range users {
		c := u % clusters
		uid := fmt.Sprint("u", u)
		for range perUser {
			var it int
			if rng.Float64() < 0.8 {
				it = c*per + rng.IntN(per)
			} else {
				it = int(zipf.Uint64())
			}
			d.Add(uid, fmt.Sprint("i", it), 1)
		}
	}
	return d
}

// popularity is the baseline model that scores items by training count.
func popularity(d *Dataset) *Model {
	m := &Model{Dim: 1, UserVectors: make([]float32, d.NumUsers()), ItemVectors: make([]float32, d.NumItems())}
	for u := range d.NumUsers() {
		m.UserVectors[u] = 1
		for _, i := range d.UserItems(u) {
			m.ItemVectors[i]++
		}
	}
	return m
}

func smallOptions() Options {
	return Options{Factors: 16, Iterations: 8, Reg: 0.01, Alpha: 1, Unobserved: 0.1, RegExponent: 1, CGSteps: 3, Seed: 3}
}

func TestTrainBeatsPopularity(t *testing.T) {
	train, test := plantedDataset(1, 600, 300, 15, 12).Split(0.2, 1)
	for _, steps := range []int{0, 3} {
		opts := smallOptions()
		opts.CGSteps = steps
		m, err := Train(context.Background(), train, opts)
		if err != nil {
			t.Fatal(err)
		}
		got := Evaluate(m, train, test, 10)
		pop := Evaluate(popularity(train), train, test, 10)
		t.Logf("CGSteps=%d: iALS %+v, popularity %+v", steps, got, pop)
		if got.Users != pop.Users || got.Users == 0 {
			t.Fatalf("evaluated %d and %d users", got.Users, pop.Users)
		}
		if got.RecallAtK < 2*pop.RecallAtK || got.RecallAtK < pop.RecallAtK+0.2 {
			t.Fatalf("recall %.3f does not clearly beat popularity %.3f", got.RecallAtK, pop.RecallAtK)
		}
		if got.NDCGAtK < pop.NDCGAtK+0.15 {
			t.Fatalf("ndcg %.3f does not clearly beat popularity %.3f", got.NDCGAtK, pop.NDCGAtK)
		}
	}
}

func TestTrainLossDecreases(t *testing.T) {
	d := plantedDataset(2, 300, 200, 8, 15)
	for _, steps := range []int{0, 3} {
		opts := smallOptions()
		opts.CGSteps = steps
		var prev float64
		for it := 1; it <= 6; it++ {
			opts.Iterations = it
			m, err := Train(context.Background(), d, opts)
			if err != nil {
				t.Fatal(err)
			}
			l := m.Loss(d, opts)
			t.Logf("CGSteps=%d iteration %d: loss %.6f", steps, it, l)
			if it > 1 && l >= prev {
				t.Fatalf("CGSteps=%d: loss rose from %v to %v at iteration %d", steps, prev, l, it)
			}
			prev = l
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	d := plantedDataset(3, 200, 150, 5, 12)
	for _, steps := range []int{0, 2} {
		opts := smallOptions()
		opts.Iterations, opts.CGSteps = 3, steps
		var ref *Model
		for _, workers := range []int{1, 2, 3} {
			opts.Workers = workers
			m, err := Train(context.Background(), d, opts)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref = m
				continue
			}
			if !slices.Equal(m.UserVectors, ref.UserVectors) || !slices.Equal(m.ItemVectors, ref.ItemVectors) {
				t.Fatalf("CGSteps=%d: %d workers gave different vectors than 1", steps, workers)
			}
		}
		opts.Seed++
		m, err := Train(context.Background(), d, opts)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(m.ItemVectors, ref.ItemVectors) {
			t.Fatal("a different seed gave identical vectors")
		}
	}
}

func TestTrainShapesAndEmptyRows(t *testing.T) {
	d := NewDataset()
	d.Add("a", "x", 1)
	d.Add("a", "y", 2)
	d.AddUser("lonely")
	d.AddItem("unseen")
	opts := smallOptions()
	opts.Factors = 3
	m, err := Train(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Dim != 3 || m.NumUsers() != 2 || m.NumItems() != 3 {
		t.Fatalf("model shape %d×%d dim %d", m.NumUsers(), m.NumItems(), m.Dim)
	}
	for _, v := range append(m.User(1), m.Item(2)...) {
		if v != 0 {
			t.Fatalf("rows without interactions should be zero: %v %v", m.User(1), m.Item(2))
		}
	}
}

func TestTrainEmpty(t *testing.T) {
	m, err := Train(context.Background(), NewDataset(), smallOptions())
	if err != nil || m.NumUsers() != 0 || m.NumItems() != 0 {
		t.Fatalf("Train(empty) = %+v, %v", m, err)
	}
	if got := Evaluate(m, NewDataset(), NewDataset(), 20); got.Users != 0 {
		t.Fatalf("Evaluate(empty) = %+v", got)
	}
}

func TestTrainHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Train(ctx, plantedDataset(4, 50, 40, 4, 5), smallOptions())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Train with cancelled context: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions invalid: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"factors":     func(o *Options) { o.Factors = 0 },
		"iterations":  func(o *Options) { o.Iterations = -1 },
		"reg":         func(o *Options) { o.Reg = 0 },
		"alpha":       func(o *Options) { o.Alpha = -1 },
		"unobserved":  func(o *Options) { o.Unobserved = -0.1 },
		"exponent":    func(o *Options) { o.RegExponent = -1 },
		"cg steps":    func(o *Options) { o.CGSteps = -1 },
		"workers":     func(o *Options) { o.Workers = -2 },
		"reg not NaN": func(o *Options) { o.Reg = 0 / func() float64 { return 0 }() },
	} {
		o := DefaultOptions()
		mod(&o)
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Validate() = %v, want ErrOptions", name, err)
		}
		if _, err := Train(context.Background(), NewDataset(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Train() = %v, want ErrOptions", name, err)
		}
	}
}
