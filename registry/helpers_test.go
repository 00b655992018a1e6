package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// newBundle returns a valid bundle of model "m" with deterministic content:
// categories on every item, every third item unavailable, attributes on every
// other one and, when seen is set, a CSR in which every fourth user has seen
// nothing.
func newBundle(users, items, dim int, seen bool) *Bundle {
	rng := rand.New(rand.NewPCG(uint64(users), uint64(items*1000+dim)))
	b := &Bundle{Manifest: Manifest{
		Model:   "m",
		Dim:     dim,
		Metrics: map[string]float64{"recall@10": 0.25, "loss": 1.5e-3},
		Params:  map[string]string{"factors": fmt.Sprint(dim), "algo": "als"},
	}}
	for u := range users {
		b.UserIDs = append(b.UserIDs, fmt.Sprintf("user-%d-ü", u))
	}
	for i := range items {
		it := Item{ID: fmt.Sprintf("item/%d", i), Category: fmt.Sprintf("cat%d", i%5), Available: i%3 != 0}
		if i%2 == 0 {
			it.Attributes = map[string]string{"brand": fmt.Sprintf("b%d", i%7), "<html>": "a&b"}
		}
		b.Items = append(b.Items, it)
	}
	b.UserVectors = randVectors(rng, users*dim)
	b.ItemVectors = randVectors(rng, items*dim)
	if seen {
		b.SeenOffsets = []int64{0}
		for u := range users {
			if u%4 != 0 && items > 0 {
				for range 1 + rng.IntN(5) {
					b.SeenItems = append(b.SeenItems, int32(rng.IntN(items)))
				}
			}
			b.SeenOffsets = append(b.SeenOffsets, int64(len(b.SeenItems)))
		}
	}
	return b
}

func randVectors(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// checkSameBundle fails t unless got holds the same data as want; nil and
// empty slices and maps count as equal.
func checkSameBundle(t *testing.T, got, want *Bundle) {
	t.Helper()
	gm, wm := got.Manifest, want.Manifest
	if !gm.CreatedAt.Equal(wm.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", gm.CreatedAt, wm.CreatedAt)
	}
	gm.CreatedAt, wm.CreatedAt = time.Time{}, time.Time{}
	if gm.FormatVersion != wm.FormatVersion || gm.Model != wm.Model || gm.Version != wm.Version ||
		gm.Dim != wm.Dim || gm.Metric != wm.Metric || gm.Users != wm.Users || gm.Items != wm.Items ||
		!maps.Equal(gm.Metrics, wm.Metrics) || !maps.Equal(gm.Params, wm.Params) || !maps.Equal(gm.Files, wm.Files) {
		t.Errorf("Manifest = %+v\nwant %+v", gm, wm)
	}
	gotUsers, gotItems := idsOf(got)
	wantUsers, wantItems := idsOf(want)
	if !slices.Equal(gotUsers, wantUsers) {
		t.Errorf("user ids = %q, want %q", gotUsers, wantUsers)
	}
	if !slices.Equal(got.UserVectors, want.UserVectors) {
		t.Errorf("UserVectors differ")
	}
	if !slices.EqualFunc(gotItems, wantItems, func(a, b Item) bool {
		return a.ID == b.ID && a.Category == b.Category && a.Available == b.Available
	}) {
		t.Errorf("items = %+v, want %+v", gotItems, wantItems)
	}
	if !slices.Equal(got.ItemVectors, want.ItemVectors) {
		t.Errorf("ItemVectors differ")
	}
	if (got.SeenOffsets == nil) != (want.SeenOffsets == nil) || !slices.Equal(got.SeenOffsets, want.SeenOffsets) {
		t.Errorf("SeenOffsets = %v, want %v", got.SeenOffsets, want.SeenOffsets)
	}
	if !bytes.Equal(got.Index, want.Index) {
		t.Errorf("Index = %q, want %q", got.Index, want.Index)
	}
	if !slices.Equal(got.SeenItems, want.SeenItems) {
		t.Errorf("SeenItems = %v, want %v", got.SeenItems, want.SeenItems)
	}
}

func openFS(t *testing.T) *FS {
	t.Helper()
	r, err := Open(filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func publish(t *testing.T, r Store, b *Bundle) string {
	t.Helper()
	v, err := r.Publish(b)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return v
}

// manifest edits manifest.json as generic JSON.
func (v versionDir) manifest(edit func(m map[string]any)) {
	v.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(v.read(ManifestFile), &m); err != nil {
		v.t.Fatal(err)
	}
	edit(m)
	data, err := json.Marshal(m)
	if err != nil {
		v.t.Fatal(err)
	}
	v.b.put(v.key(ManifestFile), data)
}

// fileEntry is the manifest's entry for a file holding data.
func fileEntry(data []byte) map[string]any {
	sum := sha256.Sum256(data)
	return map[string]any{"size": len(data), "sha256": hex.EncodeToString(sum[:])}
}

// npy returns a .npy file of data in the given shape.
func npy(t testing.TB, data any, shape ...int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteNPY(&b, data, shape...); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// idsOf returns a bundle's user ids and its items as Load keeps them (without
// attributes), from whichever form holds them.
func idsOf(b *Bundle) (users []string, items []Item) {
	return idList(b.UserRows()), itemList(b.ItemRows(), b.Catalog())
}

// idList returns the ids of rows, by row.
func idList(rows *Rows) []string {
	var ids []string
	for row := range rows.Rows() {
		ids = append(ids, rows.ID(row))
	}
	return ids
}

// itemList returns the items of rows and c, by row, without attributes.
func itemList(rows *Rows, c *Catalog) []Item {
	var items []Item
	for row := range int32(rows.Rows()) {
		items = append(items, Item{ID: rows.ID(int(row)), Category: c.CategoryName(c.Category(row)), Available: c.Available(row)})
	}
	return items
}
