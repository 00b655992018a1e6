package registry

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/perm"
)

// File records the size and SHA-256 checksum of one data file of a version.
type File struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// Manifest describes a version. It is stored as manifest.json, written last.
type Manifest struct {
	FormatVersion int                `json:"format_version"`
	Model         string             `json:"model"`
	Version       string             `json:"version"`
	Dim           int                `json:"dim"`
	Metric        string             `json:"metric"`
	Users         int                `json:"users"`
	Items         int                `json:"items"`
	CreatedAt     time.Time          `json:"created_at"`
	Metrics       map[string]float64 `json:"metrics,omitempty"` // e.g. training and validation metrics
	Params        map[string]string  `json:"params,omitempty"`  // trainer parameters
	Files         map[string]File    `json:"files"`
}

// Item is one row of the item catalogue.
type Item struct {
	ID         string            `json:"id"`
	Category   string            `json:"category,omitempty"`
	Available  bool              `json:"available"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Bundle is one version of a model: factor matrices, ids and the users'
// training interactions. Row i of UserVectors belongs to user i and row i of
// ItemVectors to item i.
//
// A bundle made to publish lists its users in UserIDs and its items in Items.
// One that Load returns leaves both nil and holds what serving needs of
// them, without a pointer per id (see Rows): UserRows, ItemRows and Catalog.
// Those three work on either kind.
type Bundle struct {
	Manifest    Manifest
	UserIDs     []string
	UserVectors []float32 // row-major, Users*Dim
	Items       []Item
	ItemVectors []float32 // row-major, Items*Dim
	SeenOffsets []int64   // CSR, Users+1, or nil
	SeenItems   []int32   // item rows; user u's are SeenItems[SeenOffsets[u]:SeenOffsets[u+1]]
	Index       []byte    // optional: the IndexFile, a prebuilt index over ItemVectors

	// What Load decoded the ids and items into.
	userRows, itemRows *Rows
	catalog            *Catalog
}

// UserRows finds the row of a user id: the index Load built, or a new one
// for a bundle made otherwise (where an id that repeats keeps its first row).
func (b *Bundle) UserRows() *Rows {
	if b.userRows != nil {
		return b.userRows
	}
	ids := b.UserIDs
	r, _, _ := newRows(len(ids), func(i int) string { return ids[i] })
	return r
}

// ItemRows is UserRows for the items.
func (b *Bundle) ItemRows() *Rows {
	if b.itemRows != nil {
		return b.itemRows
	}
	items := b.Items
	r, _, _ := newRows(len(items), func(i int) string { return items[i].ID })
	return r
}

// Catalog returns the items' categories and availability: the catalog Load
// built, or a new one for a bundle made otherwise.
func (b *Bundle) Catalog() *Catalog {
	if b.catalog != nil {
		return b.catalog
	}
	return catalogOf(b.Items)
}

// userIDs returns the number of users and the id of each row, from UserIDs
// or from the rows Load built.
func (b *Bundle) userIDs() (int, func(int) string) {
	if b.userRows != nil && b.UserIDs == nil {
		return b.userRows.Rows(), b.userRows.ID
	}
	return len(b.UserIDs), func(i int) string { return b.UserIDs[i] }
}

// itemIDs is userIDs for the items.
func (b *Bundle) itemIDs() (int, func(int) string) {
	if b.itemRows != nil && b.Items == nil {
		return b.itemRows.Rows(), b.itemRows.ID
	}
	return len(b.Items), func(i int) string { return b.Items[i].ID }
}

// Seen returns the item rows user row u interacted with in training, or nil
// when the bundle has no interactions or u is out of range. The result shares
// memory with the bundle and must not be modified.
func (b *Bundle) Seen(u int) []int32 {
	if b.SeenOffsets == nil || u < 0 || u >= len(b.SeenOffsets)-1 {
		return nil
	}
	lo, hi := b.SeenOffsets[u], b.SeenOffsets[u+1]
	if lo < 0 || hi < lo || hi > int64(len(b.SeenItems)) {
		return nil
	}
	return b.SeenItems[lo:hi:hi]
}

// Validate checks that the bundle is consistent: manifest fields, matrix
// shapes against Users, Items and Dim, non-empty unique ids, finite vectors
// and a well-formed interaction CSR. Manifest.Version may be empty (not yet
// published); Manifest.Files is not checked. Errors wrap ErrInvalid and name
// the field.
func (b *Bundle) Validate() error {
	m := &b.Manifest
	invalid := func(field string, err error) error {
		return fmt.Errorf("registry: bundle %s: %w: %v", field, ErrInvalid, err)
	}
	if m.FormatVersion != FormatVersion {
		return invalid("Manifest.FormatVersion", fmt.Errorf("is %d, want %d", m.FormatVersion, FormatVersion))
	}
	if err := checkName(m.Model); err != nil {
		return invalid("Manifest.Model", fmt.Errorf("%q %v", m.Model, err))
	}
	if _, ok := parseVersion(m.Version); m.Version != "" && !ok {
		return invalid("Manifest.Version", fmt.Errorf("%q is not a positive decimal integer", m.Version))
	}
	if m.Dim < 1 {
		return invalid("Manifest.Dim", fmt.Errorf("is %d, want at least 1", m.Dim))
	}
	if m.Metric != MetricDot {
		return invalid("Manifest.Metric", fmt.Errorf("is %q, want %q", m.Metric, MetricDot))
	}
	users, userID := b.userIDs()
	items, itemID := b.itemIDs()
	if m.Users != users {
		return invalid("Manifest.Users", fmt.Errorf("is %d, but there are %d UserIDs", m.Users, users))
	}
	if m.Items != items {
		return invalid("Manifest.Items", fmt.Errorf("is %d, but there are %d Items", m.Items, items))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Metrics)) {
		if v := m.Metrics[k]; math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid(fmt.Sprintf("Manifest.Metrics[%q]", k), fmt.Errorf("is %v, want a finite number", v))
		}
	}
	if err := checkIDs(users, userID); err != nil {
		return invalid("UserIDs", err)
	}
	if err := checkVectors(b.UserVectors, users, m.Dim); err != nil {
		return invalid("UserVectors", err)
	}
	if err := checkIDs(items, itemID); err != nil {
		return invalid("Items", err)
	}
	if err := checkVectors(b.ItemVectors, items, m.Dim); err != nil {
		return invalid("ItemVectors", err)
	}
	if b.SeenOffsets == nil {
		if len(b.SeenItems) != 0 {
			return invalid("SeenItems", errors.New("set without SeenOffsets"))
		}
		return nil
	}
	if err := checkSeenOffsets(b.SeenOffsets, users); err != nil {
		return invalid("SeenOffsets", err)
	}
	if err := checkSeenItems(b.SeenItems, b.SeenOffsets[users], items); err != nil {
		return invalid("SeenItems", err)
	}
	return nil
}

// checkID reports whether id is usable: non-empty UTF-8 without CR, LF or tab.
func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("empty id")
	case !utf8.ValidString(id):
		return fmt.Errorf("id %q is not valid UTF-8", id)
	case hasBreak(id):
		return fmt.Errorf("id %q contains CR, LF or tab", id)
	}
	return nil
}

// hasBreak reports whether s contains CR, LF or tab. It is checked for every
// id of a version at load, where strings.ContainsAny took 125 ns per id.
func hasBreak(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= '\r' && (c == '\r' || c == '\n' || c == '\t') {
			return true
		}
	}
	return false
}

// checkIDs checks that the n ids returned by id are usable and unique.
func checkIDs(n int, id func(int) string) error {
	for i := range n {
		if i%4096 == 0 {
			background.Pace()
		}
		if err := checkID(id(i)); err != nil {
			return fmt.Errorf("row %d: %v", i, err)
		}
	}
	_, err := uniqueRows(packIDs(n, id))
	return err
}

// checkVectors checks that v is a rows×dim matrix of finite numbers.
func checkVectors(v []float32, rows, dim int) error {
	if dim < 1 || rows < 0 || rows > math.MaxInt/dim || len(v) != rows*dim {
		return fmt.Errorf("has %d values, want %d rows × %d dims", len(v), rows, dim)
	}
	const expMask = 0x7f800000 // all exponent bits set: ±Inf or NaN
	for i, x := range v {
		if i%65536 == 0 {
			background.Pace()
		}
		if math.Float32bits(x)&expMask == expMask {
			return fmt.Errorf("row %d column %d is %v", i/dim, i%dim, x)
		}
	}
	return nil
}

// checkSeenOffsets checks the offsets of an interaction CSR of users rows.
func checkSeenOffsets(off []int64, users int) error {
	if len(off) != users+1 {
		return fmt.Errorf("has %d entries, want users+1 = %d", len(off), users+1)
	}
	if off[0] != 0 {
		return fmt.Errorf("starts at %d, want 0", off[0])
	}
	for u := range users {
		if off[u+1] < off[u] {
			return fmt.Errorf("user row %d ends at %d, before it starts at %d", u, off[u+1], off[u])
		}
	}
	return nil
}

// checkSeenItems checks the item rows of an interaction CSR whose offsets end
// at total.
func checkSeenItems(seen []int32, total int64, items int) error {
	if int64(len(seen)) != total {
		return fmt.Errorf("has %d entries, but the offsets end at %d", len(seen), total)
	}
	for i, it := range seen {
		if it < 0 || int(it) >= items {
			return fmt.Errorf("entry %d is item row %d, out of range [0, %d)", i, it, items)
		}
	}
	return nil
}

// ReorderItems rearranges the bundle so that item order[i] becomes item i:
// Items, ItemVectors and the item rows in SeenItems. A prebuilt Index no
// longer matches the rows and is dropped. Publishers use it to store items in
// an order their index searches faster (index.HNSW.LocalityOrder).
func (b *Bundle) ReorderItems(order []int32) error {
	n, dim := len(b.Items), b.Manifest.Dim
	if len(order) != n || dim < 1 || len(b.ItemVectors) != n*dim {
		return fmt.Errorf("registry: reorder %d items of dim %d (%d values) with an order of %d", n, dim, len(b.ItemVectors), len(order))
	}
	newRow, ok := perm.Inverse(order)
	if !ok {
		return errors.New("registry: reorder: the order is not a permutation of the items")
	}
	for _, it := range b.SeenItems {
		if it < 0 || int(it) >= n {
			return fmt.Errorf("registry: reorder: interaction with item row %d of %d", it, n)
		}
	}
	items := make([]Item, n)
	vecs := make([]float32, len(b.ItemVectors))
	for i, old := range order {
		items[i] = b.Items[old]
		copy(vecs[i*dim:(i+1)*dim], b.ItemVectors[int(old)*dim:(int(old)+1)*dim])
	}
	for j, it := range b.SeenItems {
		b.SeenItems[j] = newRow[it]
	}
	b.Items, b.ItemVectors, b.Index = items, vecs, nil
	return nil
}
