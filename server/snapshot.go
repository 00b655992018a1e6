package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/trainer"
)

// snapshot is one loaded, immutable model version: embeddings, an item index and the
// lookup tables requests need. Requests hold a pointer to it, so a swap never
// disturbs a request in flight.
type snapshot struct {
	model   string
	version string
	dim     int

	// The ids of the users and items, by row and the other way round, and the
	// items' categories and availability: tables without a pointer per id,
	// which every collection cycle would mark (see registry.Rows). Filters
	// test availability for every node a search visits; at one bit per item
	// it stays in cache (a []bool of 1M items missed it often enough to cost
	// 8% of the server's CPU under load).
	userRow *registry.Rows
	itemRow *registry.Rows
	catalog *registry.Catalog
	bundle  *registry.Bundle

	items       index.Index
	live        *live           // run-time catalog changes
	indexSource string          // "prebuilt" or "built", with why when a prebuilt graph was refused
	folder      *trainer.Folder // fold-in of users the model does not know
	// popular holds item rows by descending training popularity; popScore their share.
	popular  []int32
	popScore []float32
	// sizes are the bytes of the big arrays its load made (hugepage.Track),
	// reservedBytes how many of them were in memory set aside for it.
	sizes         []int
	reservedBytes int
}

// newSnapshot builds the index and lookup tables for b and warms the index up.
// The snapshot takes b over: b's UserIDs and Items, if any, are dropped (set
// to nil).
func newSnapshot(ctx context.Context, b *registry.Bundle, opts index.Options) (*snapshot, error) {
	m := b.Manifest
	s := &snapshot{
		model:   m.Model,
		version: m.Version,
		dim:     m.Dim,
		bundle:  b,
		userRow: b.UserRows(),
		itemRow: b.ItemRows(),
		catalog: b.Catalog(),
	}
	b.UserIDs, b.Items = nil, nil // before the index allocates
	s.live = newLive(s)
	// Sort each user's seen list so requests can binary-search it.
	for u := range s.userRow.Rows() {
		if u%4096 == 0 {
			background.Pace()
		}
		slices.Sort(b.Seen(u))
	}
	s.buildPopularity()
	fold := trainer.OptionsFromParams(m.Params)
	fold.Workers = 1 // a version loads beside live traffic: leave the other cores to it
	s.folder = trainer.NewFolder(b.ItemVectors, m.Dim, fold)

	idx, source, err := buildIndex(b, opts)
	if err != nil {
		return nil, fmt.Errorf("build index for %s/%s: %w", m.Model, m.Version, err)
	}
	s.items, s.indexSource = idx, source
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.warmUp()
	return s, nil
}

// buildPopularity orders the item rows by descending training count, ties
// by row, with a counting sort: one pass per array, not a comparison sort of
// all the items.
func (s *snapshot) buildPopularity() {
	counts := make([]int32, s.catalog.Len())
	for _, it := range s.bundle.SeenItems {
		counts[it]++
	}
	s.popular, s.popScore = popularity(counts, len(s.bundle.SeenItems))
}

// popularity returns the rows of counts by descending count, ties by row,
// and each one's share of total.
func popularity(counts []int32, total int) (rows []int32, share []float32) {
	// starts[c] will be where the rows counted c times begin: after all the
	// rows counted more often.
	most := int32(0)
	for _, c := range counts {
		most = max(most, c)
	}
	starts := make([]int, most+1)
	for _, c := range counts {
		starts[c]++
	}
	next := 0
	for c := len(starts) - 1; c >= 0; c-- {
		starts[c], next = next, next+starts[c]
	}
	rows = make([]int32, len(counts))
	share = make([]float32, len(counts))
	for row, c := range counts {
		i := starts[c]
		starts[c]++
		rows[i] = int32(row)
		if total > 0 {
			share[i] = float32(c) / float32(total)
		}
	}
	return rows, share
}

// warmUp runs a few searches so the first real requests do not pay for cold memory.
func (s *snapshot) warmUp() {
	users := s.userRow.Rows()
	for i := 0; i < 32 && i < users; i++ {
		u := i * users / 32
		s.items.Search(s.userVector(int32(u)), 10, nil)
	}
}

func (s *snapshot) userVector(u int32) []float32 {
	return s.bundle.UserVectors[int(u)*s.dim : int(u+1)*s.dim]
}

func (s *snapshot) itemVector(i int32) []float32 {
	return s.bundle.ItemVectors[int(i)*s.dim : int(i+1)*s.dim]
}

// buildIndex returns the retrieval index over b's item vectors, and where it
// came from: the graph prebuilt with the version when there is one and opts
// ask for HNSW (loading takes a fraction of the time building does), else a
// new one. A prebuilt graph that does not load (another format, other
// vectors) is rebuilt, and the source says why.
func buildIndex(b *registry.Bundle, opts index.Options) (index.Index, string, error) {
	pre := b.Index
	b.Index = nil // the graph keeps what it needs of it
	source := "built"
	if len(pre) > 0 && (opts.Kind == "" || opts.Kind == index.KindHNSW) {
		h, err := index.LoadHNSW(pre, b.ItemVectors, b.Manifest.Dim)
		if err == nil {
			if opts.EfSearch > 0 {
				h = h.WithEfSearch(opts.EfSearch)
			}
			return h, "prebuilt", nil
		}
		source = "built; the prebuilt graph was refused: " + err.Error()
	}
	idx, err := index.Build(b.ItemVectors, b.Manifest.Dim, opts)
	return idx, source, err
}
