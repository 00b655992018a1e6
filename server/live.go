package server

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/online"
	"github.com/recserve/recserve/trainer"
)

// live is what run-time catalog changes made of one snapshot's items: the
// availability, deletion and category of the version's own items (changed in
// place, read atomically by searches), and the items added since the version
// was trained (an immutable segment replaced whole). Rows below base are the
// version's; row base+i is the segment's item i.
type live struct {
	s       *snapshot
	base    int32
	unavail []atomic.Uint64 // bit per own row: unavailable or deleted
	gone    []atomic.Uint64 // bit per own row: deleted
	cat     []atomic.Int32  // own rows' category numbers
	cats    atomic.Pointer[categories]
	added   atomic.Pointer[segment]

	mu        sync.Mutex // guards the lazily built fields below and category adds
	means     [][]float32
	mean      []float32 // of every item: for an item without a known category
	userFold  *trainer.Folder
	foldOnce  sync.Once
	meansOnce sync.Once
}

// categories numbers category names; it only grows (copy on write).
type categories struct {
	names   []string
	numbers map[string]int32
}

// segment is the items added since the version was trained, immutable.
type segment struct {
	ids       []string
	rows      map[string]int32 // id -> index
	vecs      []float32
	cat       []int32
	unavail   []bool
	fromUsers []int // users its vector was folded from (0: its category's mean)
}

var emptySegment = &segment{rows: map[string]int32{}}

func (g *segment) len() int { return len(g.ids) }

func (g *segment) vec(i int, dim int) []float32 { return g.vecs[i*dim : (i+1)*dim] }

func newLive(s *snapshot) *live {
	n := s.catalog.Len()
	l := &live{s: s, base: int32(n), unavail: make([]atomic.Uint64, (n+63)/64), gone: make([]atomic.Uint64, (n+63)/64), cat: make([]atomic.Int32, n)}
	for row := range n {
		if !s.catalog.Available(int32(row)) {
			l.unavail[row/64].Or(1 << (row % 64))
		}
		l.cat[row].Store(s.catalog.Category(int32(row)))
	}
	c := &categories{numbers: map[string]int32{}}
	for i := range s.catalog.Categories() {
		name := s.catalog.CategoryName(int32(i))
		c.names = append(c.names, name)
		c.numbers[name] = int32(i)
	}
	l.cats.Store(c)
	l.added.Store(emptySegment)
	return l
}

func setBit(bits []atomic.Uint64, row int32, on bool) {
	if on {
		bits[row/64].Or(1 << (row % 64))
	} else {
		bits[row/64].And(^(uint64(1) << (row % 64)))
	}
}

func bit(bits []atomic.Uint64, row int32) bool { return bits[row>>6].Load()&(1<<(uint32(row)&63)) != 0 }

// categoryNumber returns name's number, adding it (l.mu held).
func (l *live) categoryNumber(name string) int32 {
	c := l.cats.Load()
	if n, ok := c.numbers[name]; ok {
		return n
	}
	next := &categories{names: append(slices.Clip(c.names), name), numbers: maps.Clone(c.numbers)}
	next.numbers[name] = int32(len(c.names))
	l.cats.Store(next)
	return next.numbers[name]
}

// apply applies changed items' states. New items get their category's mean
// vector until refold gives them one from their interactions.
func (l *live) apply(items []catalog.Item) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seg := l.added.Load()
	var next *segment
	edit := func() *segment {
		if next == nil {
			next = seg.clone()
		}
		return next
	}
	for _, it := range items {
		if row, ok := l.s.itemRow.Row(it.ID); ok {
			setBit(l.unavail, row, !it.Served())
			setBit(l.gone, row, it.Deleted)
			if it.Upserted {
				l.cat[row].Store(l.categoryNumber(it.Category))
			}
			continue
		}
		cur := seg
		if next != nil {
			cur = next
		}
		i, exists := cur.rows[it.ID]
		switch {
		case it.Deleted:
			if exists {
				edit().remove(int(i), l.s.dim)
			}
		case exists:
			g := edit()
			g.unavail[i] = !it.Available
			if it.Upserted {
				cat := l.categoryNumber(it.Category)
				if g.cat[i] != cat && g.fromUsers[i] == 0 {
					copy(g.vec(int(i), l.s.dim), l.categoryMean(cat))
				}
				g.cat[i] = cat
			}
		case it.Upserted: // an item the version does not know: only an upsert says enough of it
			cat := l.categoryNumber(it.Category)
			g := edit()
			g.rows[it.ID] = int32(len(g.ids))
			g.ids = append(g.ids, it.ID)
			g.vecs = append(g.vecs, l.categoryMean(cat)...)
			g.cat = append(g.cat, cat)
			g.unavail = append(g.unavail, !it.Available)
			g.fromUsers = append(g.fromUsers, 0)
		}
	}
	if next != nil {
		l.added.Store(next)
	}
}

func (g *segment) clone() *segment {
	return &segment{ids: slices.Clone(g.ids), rows: maps.Clone(g.rows), vecs: slices.Clone(g.vecs), cat: slices.Clone(g.cat),
		unavail: slices.Clone(g.unavail), fromUsers: slices.Clone(g.fromUsers)}
}

// remove deletes item i, moving the last item into its place.
func (g *segment) remove(i, dim int) {
	last := len(g.ids) - 1
	delete(g.rows, g.ids[i])
	if i != last {
		g.ids[i], g.cat[i], g.unavail[i], g.fromUsers[i] = g.ids[last], g.cat[last], g.unavail[last], g.fromUsers[last]
		copy(g.vec(i, dim), g.vec(last, dim))
		g.rows[g.ids[i]] = int32(i)
	}
	g.ids, g.cat, g.unavail, g.fromUsers = g.ids[:last], g.cat[:last], g.unavail[:last], g.fromUsers[:last]
	g.vecs = g.vecs[:last*dim]
}

// categoryMean returns the mean vector of the version's items in category
// cat, or of all its items when cat has none (a category new since training).
func (l *live) categoryMean(cat int32) []float32 {
	l.meansOnce.Do(func() {
		s, dim := l.s, l.s.dim
		counts := make([]int, s.catalog.Categories())
		sums := make([][]float64, s.catalog.Categories())
		all := make([]float64, dim)
		for row := range s.catalog.Len() {
			c := s.catalog.Category(int32(row))
			if sums[c] == nil {
				sums[c] = make([]float64, dim)
			}
			for j, x := range s.itemVector(int32(row)) {
				sums[c][j] += float64(x)
				all[j] += float64(x)
			}
			counts[c]++
		}
		l.means = make([][]float32, len(sums))
		for c := range sums {
			l.means[c] = meanOf(sums[c], counts[c])
		}
		l.mean = meanOf(all, s.catalog.Len())
	})
	if int(cat) < len(l.means) && l.means[cat] != nil {
		return l.means[cat]
	}
	return l.mean
}

func meanOf(sum []float64, n int) []float32 {
	out := make([]float32, len(sum))
	for j, x := range sum {
		if n > 0 {
			out[j] = float32(x / float64(n))
		}
	}
	return out
}

// foldItem solves an added item's vector from the users who interacted with
// it (the iALS item update against the version's user vectors, the twin of a
// user's fold-in); nil when the version knows none of them.
func (l *live) foldItem(users []online.ItemUser) ([]float32, int) {
	var rows []int32
	var ws []float32
	for _, u := range users {
		if row, ok := l.s.userRow.Row(u.User); ok && u.Weight > 0 {
			rows = append(rows, row)
			ws = append(ws, u.Weight)
		}
	}
	if len(rows) == 0 {
		return nil, 0
	}
	l.foldOnce.Do(func() {
		opts := trainer.OptionsFromParams(l.s.bundle.Manifest.Params)
		opts.Workers = 1
		l.userFold = trainer.NewFolder(l.s.bundle.UserVectors, l.s.dim, opts)
	})
	return l.userFold.FoldIn(rows, ws), len(rows)
}

// setVectors replaces added items' vectors (folded from fromUsers users) and
// reports whether any changed.
func (l *live) setVectors(vecs map[string][]float32, fromUsers map[string]int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.added.Load()
	var next *segment
	for id, v := range vecs {
		if i, ok := g.rows[id]; ok && !slices.Equal(g.vec(int(i), l.s.dim), v) {
			if next == nil {
				next = g.clone()
			}
			copy(next.vec(int(i), l.s.dim), v)
			next.fromUsers[i] = fromUsers[id]
		}
	}
	if next != nil {
		l.added.Store(next)
	}
	return next != nil
}

// searchAdded scans the added items for the best n that f allows and merges
// them into hits, best first (ties by lower row).
func (l *live) searchAdded(q []float32, n int, f *itemFilter, hits []index.Result) []index.Result {
	g := f.added
	if g.len() == 0 {
		return hits
	}
	for i := range g.ids {
		row := l.base + int32(i)
		if f.allow(row) {
			hits = append(hits, index.Result{ID: row, Score: index.Dot(q, g.vec(i, l.s.dim))})
		}
	}
	slices.SortFunc(hits, func(a, b index.Result) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return int(a.ID - b.ID)
	})
	return hits[:min(n, len(hits))]
}
