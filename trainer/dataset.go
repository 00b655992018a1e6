package trainer

import (
	"math/rand/v2"
	"slices"
)

// Dataset is a user×item interaction set with string ids mapped to dense
// rows. Rows are assigned in order of first appearance. UserIDs and ItemIDs
// are indexed by row and must be treated as read-only.
//
// A Dataset is not safe for concurrent mutation; once filled, any number of
// goroutines may read it.
type Dataset struct {
	UserIDs []string
	ItemIDs []string

	userRow map[string]int32
	itemRow map[string]int32
	items   [][]int32   // per user: item rows, sorted ascending, no repeats
	weights [][]float32 // per user: summed event weight, parallel to items
	nnz     int
}

// NewDataset returns an empty Dataset.
func NewDataset() *Dataset {
	return &Dataset{userRow: map[string]int32{}, itemRow: map[string]int32{}}
}

// NewHeldOut returns an empty Dataset whose id maps start as copies of d's,
// so that a test or validation set read into it gives every user and item
// known to d the same row as in d. Ids first seen in the held-out data get
// rows after d's; a model trained on d has no vectors for them, so Evaluate
// counts such test items as misses and such users as having no hits. d is
// not modified.
func NewHeldOut(d *Dataset) *Dataset {
	h := &Dataset{
		UserIDs: slices.Clone(d.UserIDs),
		ItemIDs: slices.Clone(d.ItemIDs),
		userRow: make(map[string]int32, len(d.userRow)),
		itemRow: make(map[string]int32, len(d.itemRow)),
		items:   make([][]int32, len(d.UserIDs)),
		weights: make([][]float32, len(d.UserIDs)),
	}
	for k, v := range d.userRow {
		h.userRow[k] = v
	}
	for k, v := range d.itemRow {
		h.itemRow[k] = v
	}
	return h
}

// NumUsers returns the number of user rows.
func (d *Dataset) NumUsers() int { return len(d.UserIDs) }

// NumItems returns the number of item rows.
func (d *Dataset) NumItems() int { return len(d.ItemIDs) }

// NumInteractions returns the number of distinct (user, item) pairs.
func (d *Dataset) NumInteractions() int { return d.nnz }

// UserRow returns the row of a user id.
func (d *Dataset) UserRow(id string) (int, bool) {
	r, ok := d.userRow[id]
	return int(r), ok
}

// ItemRow returns the row of an item id.
func (d *Dataset) ItemRow(id string) (int, bool) {
	r, ok := d.itemRow[id]
	return int(r), ok
}

// AddUser returns the row of a user id, adding the user if it is new.
func (d *Dataset) AddUser(id string) int {
	if r, ok := d.userRow[id]; ok {
		return int(r)
	}
	r := int32(len(d.UserIDs))
	d.userRow[id] = r
	d.UserIDs = append(d.UserIDs, id)
	d.items = append(d.items, nil)
	d.weights = append(d.weights, nil)
	return int(r)
}

// AddItem returns the row of an item id, adding the item if it is new.
func (d *Dataset) AddItem(id string) int {
	if r, ok := d.itemRow[id]; ok {
		return int(r)
	}
	r := int32(len(d.ItemIDs))
	d.itemRow[id] = r
	d.ItemIDs = append(d.ItemIDs, id)
	return int(r)
}

// Add records an interaction, adding the user and item if they are new.
// Repeated pairs accumulate their weights.
func (d *Dataset) Add(user, item string, weight float32) {
	d.addRow(d.AddUser(user), int32(d.AddItem(item)), weight)
}

// addRow adds weight to the pair (u, i), keeping the user's items sorted.
// Appending in ascending item order is O(1); otherwise it is an insertion.
func (d *Dataset) addRow(u int, i int32, w float32) {
	items := d.items[u]
	n := len(items)
	if n == 0 || items[n-1] < i {
		d.items[u] = append(items, i)
		d.weights[u] = append(d.weights[u], w)
		d.nnz++
		return
	}
	p, found := slices.BinarySearch(items, i)
	if found {
		d.weights[u][p] += w
		return
	}
	d.items[u] = slices.Insert(items, p, i)
	d.weights[u] = slices.Insert(d.weights[u], p, w)
	d.nnz++
}

// UserItems returns the item rows of user row u, sorted ascending. It
// returns nil for a user without items or out of range. The slice is owned
// by d.
func (d *Dataset) UserItems(u int) []int32 {
	if u < 0 || u >= len(d.items) {
		return nil
	}
	return d.items[u]
}

// UserWeights returns the summed event weights parallel to UserItems(u).
// The slice is owned by d.
func (d *Dataset) UserWeights(u int) []float32 {
	if u < 0 || u >= len(d.weights) {
		return nil
	}
	return d.weights[u]
}

// Split holds out a random fraction of each user's items, for validation.
// A user with n items gets round(fraction·n) of them held out, but always
// keeps at least one item for training. Both returned sets have d's users
// and items with d's rows (test is built as by NewHeldOut from train). The
// split is a deterministic function of seed.
func (d *Dataset) Split(fraction float64, seed uint64) (train, test *Dataset) {
	train = &Dataset{
		UserIDs: slices.Clone(d.UserIDs),
		ItemIDs: slices.Clone(d.ItemIDs),
		userRow: make(map[string]int32, len(d.userRow)),
		itemRow: make(map[string]int32, len(d.itemRow)),
		items:   make([][]int32, len(d.items)),
		weights: make([][]float32, len(d.items)),
	}
	for k, v := range d.userRow {
		train.userRow[k] = v
	}
	for k, v := range d.itemRow {
		train.itemRow[k] = v
	}
	test = NewHeldOut(train)
	rng := rand.New(rand.NewPCG(seed, 0x5eed5eed))
	var perm []int
	var hold []bool
	for u, items := range d.items {
		n := len(items)
		h := int(fraction*float64(n) + 0.5)
		if h > n-1 {
			h = n - 1
		}
		if h < 0 {
			h = 0
		}
		perm = perm[:0]
		for j := range n {
			perm = append(perm, j)
		}
		// Partial Fisher–Yates: the first h entries are the held-out ones.
		for j := range h {
			k := j + rng.IntN(n-j)
			perm[j], perm[k] = perm[k], perm[j]
		}
		hold = slices.Grow(hold[:0], n)[:n]
		clear(hold)
		for _, j := range perm[:h] {
			hold[j] = true
		}
		w := d.weights[u]
		for j, it := range items {
			if hold[j] {
				test.addRow(u, it, w[j])
			} else {
				train.addRow(u, it, w[j])
			}
		}
	}
	return train, test
}
