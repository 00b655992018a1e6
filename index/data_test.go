package index

import (
	"math"
	"math/rand"
	"slices"
)

// dataset is a generated vectors matrix with queries from the same
// distribution.
type dataset struct {
	dim     int
	vecs    []float32
	queries [][]float32
}

func (d *dataset) n() int { return len(d.vecs) / d.dim }

// mixture draws n vectors and nq queries of dimension dim from a Gaussian
// mixture of the given number of clusters: centres ~ N(0, I), points =
// centre + spread*N(0, I), L2-normalized. If normScale, each row is then
// scaled by a factor log-uniform in [0.5, 2] (queries stay normalized).
func mixture(seed int64, n, nq, dim, clusters int, spread float64, normScale bool) *dataset {
	rng := rand.New(rand.NewSource(seed))
	centres := make([]float64, clusters*dim)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	draw := func(dst []float32) {
		c := centres[rng.Intn(clusters)*dim:][:dim]
		var norm float64
		tmp := make([]float64, dim)
		for j := range tmp {
			tmp[j] = c[j] + spread*rng.NormFloat64()
			norm += tmp[j] * tmp[j]
		}
		norm = math.Sqrt(norm)
		for j := range tmp {
			dst[j] = float32(tmp[j] / norm)
		}
	}
	d := &dataset{dim: dim, vecs: make([]float32, n*dim)}
	for i := range n {
		row := d.vecs[i*dim : (i+1)*dim]
		draw(row)
		if normScale {
			s := float32(math.Exp2(2*rng.Float64() - 1))
			for j := range row {
				row[j] *= s
			}
		}
	}
	for range nq {
		q := make([]float32, dim)
		draw(q)
		d.queries = append(d.queries, q)
	}
	return d
}

// bruteTopK is the reference top-k: it scores every allowed row with Dot
// and keeps a sorted list by insertion, independently of the heap code.
func bruteTopK(vecs []float32, dim int, q []float32, k int, f Filter) []Result {
	var top []Result
	for id := range len(vecs) / dim {
		if f != nil && !f(int32(id)) {
			continue
		}
		r := Result{ID: int32(id), Score: Dot(q, vecs[id*dim:(id+1)*dim])}
		if len(top) == k && !worse(top[k-1], r) {
			continue
		}
		i := len(top)
		for i > 0 && worse(top[i-1], r) {
			i--
		}
		top = slices.Insert(top, i, r)
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}

// truths returns the reference top-k of every query.
func truths(d *dataset, k int, f Filter) [][]Result {
	out := make([][]Result, len(d.queries))
	for i, q := range d.queries {
		out[i] = bruteTopK(d.vecs, d.dim, q, k, f)
	}
	return out
}

// recallAt returns the mean fraction of each truth's IDs found in got.
func recallAt(got, truth [][]Result) float64 {
	var sum float64
	for i := range truth {
		if len(truth[i]) == 0 {
			sum++
			continue
		}
		hit := 0
		for _, t := range truth[i] {
			for _, g := range got[i] {
				if g.ID == t.ID {
					hit++
					break
				}
			}
		}
		sum += float64(hit) / float64(len(truth[i]))
	}
	return sum / float64(len(truth))
}

// searchAll runs every query of d against idx.
func searchAll(idx Index, d *dataset, k int, f Filter) [][]Result {
	out := make([][]Result, len(d.queries))
	for i, q := range d.queries {
		out[i] = idx.Search(q, k, f)
	}
	return out
}

// subset returns a filter allowing a random fraction of n IDs.
func subset(seed int64, n int, fraction float64) Filter {
	rng := rand.New(rand.NewSource(seed))
	allow := make([]bool, n)
	for i := range allow {
		allow[i] = rng.Float64() < fraction
	}
	return func(id int32) bool { return allow[id] }
}
