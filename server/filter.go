package server

import (
	"slices"

	"github.com/recserve/recserve/index"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// itemFilter is a request's business rules compiled against one snapshot.
type itemFilter struct {
	s                  *snapshot
	l                  *live
	added              *segment    // the items added to the catalog, as the request found them
	cats               *categories // category numbers, as the request found them
	includeCat         []bool      // nil: every category
	excludeCat         []bool      // nil: none
	excludeItems       map[int32]struct{}
	seen               []int32 // training items of the user, excluded (sorted)
	seenBits           uint64  // bit row%64 set for each row in seen: most rows skip the search
	self               int32   // query item excluded from SimilarItems, or -1
	includeUnavailable bool
}

// compileFilter builds the filter for a request. Unknown categories and item ids match nothing.
func compileFilter(s *snapshot, f *recservev1.Filter) *itemFilter {
	c := &itemFilter{s: s, l: s.live, added: s.live.added.Load(), cats: s.live.cats.Load(), self: -1, includeUnavailable: f.GetIncludeUnavailable()}
	if cats := f.GetIncludeCategories(); len(cats) > 0 {
		c.includeCat = c.categoryMask(cats)
	}
	if cats := f.GetExcludeCategories(); len(cats) > 0 {
		c.excludeCat = c.categoryMask(cats)
	}
	if ids := f.GetExcludeItemIds(); len(ids) > 0 {
		c.excludeItems = make(map[int32]struct{}, len(ids))
		for _, id := range ids {
			if row, ok := c.row(id); ok {
				c.excludeItems[row] = struct{}{}
			}
		}
	}
	return c
}

// row returns the row of item id: one of the version's or an added one.
func (f *itemFilter) row(id string) (int32, bool) {
	if row, ok := f.s.itemRow.Row(id); ok {
		return row, true
	}
	if i, ok := f.added.rows[id]; ok {
		return f.l.base + i, true
	}
	return -1, false
}

// categoryMask marks the categories named; a category added after it was made
// is in none of them.
func (f *itemFilter) categoryMask(names []string) []bool {
	mask := make([]bool, len(f.cats.names))
	for _, n := range names {
		if c, ok := f.cats.numbers[n]; ok {
			mask[c] = true
		}
	}
	return mask
}

func inMask(mask []bool, cat int32) bool { return int(cat) < len(mask) && mask[cat] }

// excludeOnline adds items the user interacted with since training.
func (f *itemFilter) excludeOnline(seen map[string]struct{}) {
	for id := range seen {
		if row, ok := f.row(id); ok {
			if f.excludeItems == nil {
				f.excludeItems = make(map[int32]struct{}, len(seen))
			}
			f.excludeItems[row] = struct{}{}
		}
	}
}

// excludeSeen excludes the user's training items, rows sorted.
func (f *itemFilter) excludeSeen(rows []int32) {
	f.seen = rows
	for _, r := range rows {
		f.seenBits |= 1 << (uint32(r) % 64)
	}
}

// allow reports whether item row id passes every rule.
func (f *itemFilter) allow(id int32) bool {
	if id == f.self {
		return false
	}
	var cat int32
	if id < f.l.base {
		if f.includeUnavailable {
			if bit(f.l.gone, id) {
				return false
			}
		} else if bit(f.l.unavail, id) {
			return false
		}
		if f.includeCat != nil || f.excludeCat != nil { // only then read the item's category
			cat = f.l.cat[id].Load()
		}
	} else {
		i := id - f.l.base
		if !f.includeUnavailable && f.added.unavail[i] {
			return false
		}
		cat = f.added.cat[i]
	}
	if f.includeCat != nil && !inMask(f.includeCat, cat) {
		return false
	}
	if f.excludeCat != nil && inMask(f.excludeCat, cat) {
		return false
	}
	if f.excludeItems != nil {
		if _, ok := f.excludeItems[id]; ok {
			return false
		}
	}
	if f.seenBits>>(uint32(id)%64)&1 != 0 {
		if _, ok := slices.BinarySearch(f.seen, id); ok {
			return false
		}
	}
	return true
}

// func returns the filter in the form the index takes.
func (f *itemFilter) fn() index.Filter { return f.allow }
