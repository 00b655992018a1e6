package registry

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	valid := func() *Bundle {
		b := newBundle(4, 6, 3, true)
		b.Manifest.FormatVersion = FormatVersion
		b.Manifest.Metric = MetricDot
		b.Manifest.Users, b.Manifest.Items = 4, 6
		return b
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid bundle: %v", err)
	}
	tests := []struct {
		name   string
		edit   func(b *Bundle)
		wantIn string // the field named in the error
	}{
		{"format version", func(b *Bundle) { b.Manifest.FormatVersion = 2 }, "Manifest.FormatVersion"},
		{"model name", func(b *Bundle) { b.Manifest.Model = "../x" }, "Manifest.Model"},
		{"empty model", func(b *Bundle) { b.Manifest.Model = "" }, "Manifest.Model"},
		{"version", func(b *Bundle) { b.Manifest.Version = "01" }, "Manifest.Version"},
		{"dim", func(b *Bundle) { b.Manifest.Dim = 0 }, "Manifest.Dim"},
		{"metric", func(b *Bundle) { b.Manifest.Metric = "cosine" }, "Manifest.Metric"},
		{"users count", func(b *Bundle) { b.Manifest.Users = 5 }, "Manifest.Users"},
		{"items count", func(b *Bundle) { b.Manifest.Items = 1 }, "Manifest.Items"},
		{"NaN metric", func(b *Bundle) { b.Manifest.Metrics["loss"] = math.NaN() }, `Manifest.Metrics["loss"]`},
		{"empty user id", func(b *Bundle) { b.UserIDs[1] = "" }, "UserIDs"},
		{"user id with tab", func(b *Bundle) { b.UserIDs[1] = "a\tb" }, "UserIDs"},
		{"user id with LF", func(b *Bundle) { b.UserIDs[1] = "a\nb" }, "UserIDs"},
		{"user id ending in CR", func(b *Bundle) { b.UserIDs[1] = "ab\r" }, "UserIDs"},
		{"user id not UTF-8", func(b *Bundle) { b.UserIDs[1] = "\xff" }, "UserIDs"},
		{"duplicate user id", func(b *Bundle) { b.UserIDs[3] = b.UserIDs[0] }, "duplicate"},
		{"duplicate item id", func(b *Bundle) { b.Items[5].ID = b.Items[2].ID }, "Items"},
		{"empty item id", func(b *Bundle) { b.Items[0].ID = "" }, "Items"},
		{"user vectors short", func(b *Bundle) { b.UserVectors = b.UserVectors[1:] }, "UserVectors"},
		{"item vectors long", func(b *Bundle) { b.ItemVectors = append(b.ItemVectors, 1) }, "ItemVectors"},
		{"NaN user vector", func(b *Bundle) { b.UserVectors[4] = float32(math.NaN()) }, "UserVectors: invalid: row 1 column 1 is NaN"},
		{"Inf item vector", func(b *Bundle) { b.ItemVectors[0] = float32(math.Inf(-1)) }, "ItemVectors"},
		{"seen items without offsets", func(b *Bundle) { b.SeenOffsets = nil }, "SeenItems"},
		{"offsets length", func(b *Bundle) { b.SeenOffsets = b.SeenOffsets[:4] }, "SeenOffsets"},
		{"offsets start", func(b *Bundle) { b.SeenOffsets[0] = 1 }, "SeenOffsets"},
		{"offsets decrease", func(b *Bundle) { b.SeenOffsets[2] = b.SeenOffsets[3] + 1 }, "SeenOffsets"},
		{"offsets end", func(b *Bundle) { b.SeenItems = append(b.SeenItems, 0) }, "SeenItems"},
		{"seen item negative", func(b *Bundle) { b.SeenItems[0] = -1 }, "SeenItems"},
		{"seen item too big", func(b *Bundle) { b.SeenItems[0] = 6 }, "SeenItems: invalid: entry 0 is item row 6, out of range [0, 6)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := valid()
			tt.edit(b)
			err := b.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantIn)
			}
		})
	}
}

func TestSeen(t *testing.T) {
	b := &Bundle{SeenOffsets: []int64{0, 2, 2, 3}, SeenItems: []int32{5, 1, 7}}
	for u, want := range [][]int32{{5, 1}, nil, {7}} {
		if got := b.Seen(u); !slices.Equal(got, want) {
			t.Errorf("Seen(%d) = %v, want %v", u, got, want)
		}
	}
	if got := b.Seen(0); cap(got) != 2 {
		t.Errorf("cap(Seen(0)) = %d, want 2 so appends cannot clobber the next user", cap(got))
	}
	for _, u := range []int{-1, 3, math.MaxInt} {
		if got := b.Seen(u); got != nil {
			t.Errorf("Seen(%d) = %v, want nil", u, got)
		}
	}
	if got := (&Bundle{}).Seen(0); got != nil {
		t.Errorf("Seen without CSR = %v, want nil", got)
	}
}

func TestBundleRows(t *testing.T) {
	b := newBundle(4, 6, 2, true)
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Publish(b)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := r.Load(b.Manifest.Model, v)
	if err != nil {
		t.Fatal(err)
	}
	userIDs, items := idsOf(b)
	for name, bb := range map[string]*Bundle{"made": b, "loaded": loaded} {
		users, itemRows := bb.UserRows(), bb.ItemRows()
		if users.Len() != len(userIDs) || itemRows.Len() != len(items) {
			t.Fatalf("%s: %d user rows, %d item rows; want %d and %d", name, users.Len(), itemRows.Len(), len(userIDs), len(items))
		}
		for i, id := range userIDs {
			if row, ok := users.Row(id); !ok || row != int32(i) {
				t.Errorf("%s: user %q at row %d (%v), want %d", name, id, row, ok, i)
			}
		}
		c := bb.Catalog()
		for i, it := range items {
			if row, ok := itemRows.Row(it.ID); !ok || row != int32(i) {
				t.Errorf("%s: item %q at row %d (%v), want %d", name, it.ID, row, ok, i)
			}
			if got := c.CategoryName(c.Category(int32(i))); got != it.Category || c.Available(int32(i)) != it.Available {
				t.Errorf("%s: item %q in %q, available %v; want %q, %v", name, it.ID, got, c.Available(int32(i)), it.Category, it.Available)
			}
		}
		for _, id := range []string{"", "nobody", userIDs[0] + "x"} {
			if row, ok := users.Row(id); ok {
				t.Errorf("%s: unknown user %q found at row %d", name, id, row)
			}
		}
	}
	if loaded.UserIDs != nil || loaded.Items != nil {
		t.Error("Load kept a string per id: UserIDs or Items are set")
	}
	if _, err := r.Publish(loaded); !errors.Is(err, ErrInvalid) {
		t.Errorf("Publish of a loaded bundle = %v, want ErrInvalid", err)
	}
}

func TestReorderItems(t *testing.T) {
	b := newBundle(6, 9, 3, true)
	dim := b.Manifest.Dim
	vec := map[string][]float32{}
	for i, it := range b.Items {
		vec[it.ID] = slices.Clone(b.ItemVectors[i*dim : (i+1)*dim])
	}
	seenIDs := func(b *Bundle) [][]string {
		users, items := idsOf(b)
		var out [][]string
		for u := range users {
			var ids []string
			for _, it := range b.Seen(u) {
				ids = append(ids, items[it].ID)
			}
			slices.Sort(ids)
			out = append(out, ids)
		}
		return out
	}
	wantSeen := seenIDs(b)
	b.Index = []byte("a graph over the old rows")
	order := []int32{8, 0, 7, 1, 6, 2, 5, 3, 4}
	if err := b.ReorderItems(order); err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Publish(b) // which validates it
	if err != nil {
		t.Fatal(err)
	}
	if b, err = r.Load(b.Manifest.Model, v); err != nil {
		t.Fatal(err)
	}
	_, items := idsOf(b)
	for i, it := range items {
		if it.ID != newBundle(6, 9, 3, true).Items[order[i]].ID {
			t.Errorf("item %d is %s, want the old item %d", i, it.ID, order[i])
		}
		if !slices.Equal(b.ItemVectors[i*dim:(i+1)*dim], vec[it.ID]) {
			t.Errorf("item %s lost its vector", it.ID)
		}
	}
	if got := seenIDs(b); !slices.EqualFunc(got, wantSeen, slices.Equal) {
		t.Errorf("users' seen items %v, want %v", got, wantSeen)
	}
	if b.Index != nil {
		t.Error("the prebuilt index over the old rows was kept")
	}
	if row, ok := b.ItemRows().Row(items[0].ID); !ok || row != 0 {
		t.Errorf("ItemRows finds %s at row %d (%v), want 0", items[0].ID, row, ok)
	}
	for name, bad := range map[string][]int32{"short": order[1:], "repeated": {0, 0, 7, 1, 6, 2, 5, 3, 4}, "out of range": {9, 0, 7, 1, 6, 2, 5, 3, 4}} {
		if err := newBundle(6, 9, 3, true).ReorderItems(bad); err == nil {
			t.Errorf("%s order accepted", name)
		}
	}
}

func TestHasBreak(t *testing.T) {
	for s, want := range map[string]bool{
		"": false, "u0000001": false, "é\x0b\x0c\x1f~": false,
		"\t": true, "a\nb": true, "ab\r": true, "\x00\t": true,
	} {
		if got := hasBreak(s); got != want {
			t.Errorf("hasBreak(%q) = %v, want %v", s, got, want)
		}
	}
}
