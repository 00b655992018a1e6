package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/recserve/recserve/registry"
)

// genOptions describe a synthetic model for "recserve bench serve".
type genOptions struct {
	Users, Items, Dim int
	Clusters          int     // taste clusters shared by users and items
	Noise             float64 // per-component spread around a cluster centre
	Categories        int
	Seen              int    // training items per user
	Seed              uint64 // vectors and seen items; ids and categories do not depend on it
}

func benchUserID(i int) string { return fmt.Sprintf("u%07d", i) }
func benchItemID(i int) string { return fmt.Sprintf("i%07d", i) }

// genBundle builds a model deterministically from o: unit vectors scattered
// around o.Clusters random unit centres (so a graph index sees realistic
// neighbourhoods), item i in cluster i%Clusters and category cluster%Categories,
// every 100th item unavailable, and o.Seen random training items per user.
func genBundle(model string, o genOptions) *registry.Bundle {
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	centres := make([]float32, o.Clusters*o.Dim)
	for c := range o.Clusters {
		unitGaussian(rng, centres[c*o.Dim:(c+1)*o.Dim], nil, 1)
	}
	centre := func(c int) []float32 { return centres[c*o.Dim : (c+1)*o.Dim] }

	b := &registry.Bundle{
		Manifest:    registry.Manifest{FormatVersion: registry.FormatVersion, Metric: registry.MetricDot, Model: model, Dim: o.Dim, Users: o.Users, Items: o.Items, Params: map[string]string{"synthetic": "bench"}},
		UserIDs:     make([]string, o.Users),
		UserVectors: make([]float32, o.Users*o.Dim),
		Items:       make([]registry.Item, o.Items),
		ItemVectors: make([]float32, o.Items*o.Dim),
	}
	for i := range o.Items {
		c := i % o.Clusters
		b.Items[i] = registry.Item{ID: benchItemID(i), Category: fmt.Sprintf("cat-%02d", c%o.Categories), Available: i%100 != 99}
		unitGaussian(rng, b.ItemVectors[i*o.Dim:(i+1)*o.Dim], centre(c), o.Noise)
	}
	for u := range o.Users {
		b.UserIDs[u] = benchUserID(u)
		unitGaussian(rng, b.UserVectors[u*o.Dim:(u+1)*o.Dim], centre(rng.IntN(o.Clusters)), o.Noise)
	}
	if o.Seen > 0 && o.Items > 0 {
		b.SeenOffsets = make([]int64, o.Users+1)
		b.SeenItems = make([]int32, 0, o.Users*o.Seen)
		for u := range o.Users {
			for range o.Seen {
				b.SeenItems = append(b.SeenItems, int32(rng.IntN(o.Items)))
			}
			b.SeenOffsets[u+1] = int64(len(b.SeenItems))
		}
	}
	return b
}

// unitGaussian sets v to centre plus Gaussian noise of spread sigma (just noise
// when centre is nil), scaled to unit length.
func unitGaussian(rng *rand.Rand, v, centre []float32, sigma float64) {
	var norm float64
	for j := range v {
		x := rng.NormFloat64() * sigma
		if centre != nil {
			x += float64(centre[j])
		}
		v[j] = float32(x)
		norm += x * x
	}
	inv := float32(1 / math.Sqrt(norm))
	for j := range v {
		v[j] *= inv
	}
}
