package registry

import (
	"strings"

	"github.com/recserve/recserve/internal/hugepage"
)

// Catalog is what serving keeps of a version's items, by row: each item's
// category and whether it is available. It holds no pointer per item (see
// Rows): categories are numbered, in order of first appearance, and
// availability is a bit per item. Item attributes are not kept.
type Catalog struct {
	names       []string         // names[cat]: the name of category cat
	numbers     map[string]int32 // the other way round
	category    []int32          // category[row]: the category of item row
	unavailable []uint64         // bit row set: item row is not available
}

// newCatalog returns an empty catalog with room for n items.
func newCatalog(n int) *Catalog {
	return &Catalog{numbers: map[string]int32{}, category: hugepage.Make[int32](n)[:0], unavailable: make([]uint64, 0, (n+63)/64)}
}

// catalogOf returns the catalog of items.
func catalogOf(items []Item) *Catalog {
	c := newCatalog(len(items))
	for _, it := range items {
		c.add(it.Category, it.Available)
	}
	return c
}

// add appends an item; the catalog keeps a copy of category.
func (c *Catalog) add(category string, available bool) {
	cat, ok := c.numbers[category]
	if !ok {
		cat = int32(len(c.names))
		category = strings.Clone(category)
		c.numbers[category] = cat
		c.names = append(c.names, category)
	}
	row := len(c.category)
	c.category = append(c.category, cat)
	if row%64 == 0 {
		c.unavailable = append(c.unavailable, 0)
	}
	if !available {
		c.unavailable[row/64] |= 1 << (row % 64)
	}
}

// Len returns the number of items.
func (c *Catalog) Len() int { return len(c.category) }

// Category returns the number of item row's category, in [0, Categories()).
func (c *Catalog) Category(row int32) int32 { return c.category[row] }

// Available reports whether item row is available.
func (c *Catalog) Available(row int32) bool {
	return c.unavailable[row>>6]&(1<<(uint32(row)&63)) == 0
}

// Categories returns the number of distinct categories.
func (c *Catalog) Categories() int { return len(c.names) }

// CategoryName returns the name of category number cat.
func (c *Catalog) CategoryName(cat int32) string { return c.names[cat] }

// CategoryNumber returns the number of the category called name, and whether
// any item has it.
func (c *Catalog) CategoryNumber(name string) (int32, bool) {
	cat, ok := c.numbers[name]
	return cat, ok
}
