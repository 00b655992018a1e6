// Package sampledata generates a realistic sample catalog and interaction log for the
// demo and for tests: items in categories with a long-tailed popularity, users whose
// tastes concentrate on a few categories and on one style within each.
package sampledata

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/recserve/recserve/registry"
)

// Categories of the sample catalog.
var Categories = []string{
	"books", "music", "movies", "games", "electronics", "home",
	"garden", "toys", "sports", "beauty", "fashion", "grocery",
}

const styles = 4 // item styles per category; each user prefers one per category

// Options size the generated data.
type Options struct {
	Users int   // default 2000
	Items int   // default 1500
	Seed  int64 // default 1
	// Start is the timestamp of the first event (default 2026-01-01 UTC).
	Start time.Time
}

// Event is one interaction, as the JSON-lines event format carries it.
type Event struct {
	UserID    string    `json:"user_id"`
	ItemID    string    `json:"item_id"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
}

// Data is a generated catalog and interaction log.
type Data struct {
	Items  []registry.Item
	Events []Event
}

// Generate returns deterministic sample data for opts.
func Generate(opts Options) *Data {
	if opts.Users <= 0 {
		opts.Users = 2000
	}
	if opts.Items <= 0 {
		opts.Items = 1500
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Start.IsZero() {
		opts.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed))

	// Items: category round robin, a style, and a Zipf-like popularity weight.
	d := &Data{Items: make([]registry.Item, opts.Items)}
	byCatStyle := make([][][]int, len(Categories))
	cumW := make([][][]float64, len(Categories))
	for c := range Categories {
		byCatStyle[c] = make([][]int, styles)
		cumW[c] = make([][]float64, styles)
	}
	perm := rng.Perm(opts.Items) // popularity rank
	for i := range d.Items {
		c, st := i%len(Categories), (i/len(Categories))%styles
		d.Items[i] = registry.Item{
			ID:        fmt.Sprintf("item-%05d", i),
			Category:  Categories[c],
			Available: rng.Float64() > 0.03,
			Attributes: map[string]string{
				"style": fmt.Sprintf("style-%d", st),
				"price": fmt.Sprintf("%.2f", 5+rng.ExpFloat64()*30),
			},
		}
		w := 1 / math.Pow(float64(perm[i]+1), 0.8)
		list := cumW[c][st]
		if n := len(list); n > 0 {
			w += list[n-1]
		}
		byCatStyle[c][st] = append(byCatStyle[c][st], i)
		cumW[c][st] = append(list, w)
	}

	types := []struct {
		name string
		p    float64
	}{{"view", 0.6}, {"click", 0.25}, {"add_to_cart", 0.1}, {"purchase", 0.05}}
	for u := 0; u < opts.Users; u++ {
		user := fmt.Sprintf("user-%05d", u)
		// Two or three favourite categories, one preferred style in each.
		favs := rng.Perm(len(Categories))[:2+rng.IntN(2)]
		pref := make([]int, len(favs))
		for i := range pref {
			pref[i] = rng.IntN(styles)
		}
		count := 5 + int(math.Exp(rng.NormFloat64()*0.6+2.5)) // log-normal, median ~17
		for e := 0; e < count; e++ {
			k := rng.IntN(len(favs))
			c, st := favs[k], pref[k]
			if rng.Float64() < 0.15 { // some exploration
				c, st = rng.IntN(len(Categories)), rng.IntN(styles)
			}
			items, cw := byCatStyle[c][st], cumW[c][st]
			if len(items) == 0 {
				continue
			}
			item := items[pick(cw, rng.Float64()*cw[len(cw)-1])]
			r, typ := rng.Float64(), types[0].name
			for _, t := range types {
				if r < t.p {
					typ = t.name
					break
				}
				r -= t.p
			}
			ts := opts.Start.Add(time.Duration(u*97+e*3600) * time.Second)
			d.Events = append(d.Events, Event{UserID: user, ItemID: d.Items[item].ID, Type: typ, Timestamp: ts})
		}
	}
	return d
}

// pick returns the first index whose cumulative weight exceeds x.
func pick(cum []float64, x float64) int {
	lo, hi := 0, len(cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// WriteEvents writes the events as JSON lines.
func (d *Data) WriteEvents(w io.Writer) error { return writeJSONL(w, d.Events) }

// WriteItems writes the catalog as JSON lines in the registry's items.jsonl format.
func (d *Data) WriteItems(w io.Writer) error { return writeJSONL(w, d.Items) }

func writeJSONL[T any](w io.Writer, rows []T) error {
	enc := json.NewEncoder(w)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			return err
		}
	}
	return nil
}
