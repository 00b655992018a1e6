package registry

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestCatalog(t *testing.T) {
	const n = 200
	available := func(row int32) bool { return !(row%7 == 3 || row == 63 || row == 64 || row == n-1) }
	category := func(row int32) string { return fmt.Sprintf("c%d", row%5) }
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{ID: fmt.Sprint(i), Category: category(int32(i)), Available: available(int32(i))}
	}
	c := catalogOf(items)
	if c.Len() != n || c.Categories() != 5 {
		t.Fatalf("%d items in %d categories, want %d in 5", c.Len(), c.Categories(), n)
	}
	for row := range int32(n) {
		if c.Available(row) != available(row) {
			t.Errorf("Available(%d) = %v, want %v", row, c.Available(row), available(row))
		}
		if got := c.CategoryName(c.Category(row)); got != category(row) {
			t.Errorf("item %d in %q, want %q", row, got, category(row))
		}
	}
	if cat, ok := c.CategoryNumber("c3"); !ok || c.CategoryName(cat) != "c3" {
		t.Errorf("CategoryNumber(c3) = %d, %v", cat, ok)
	}
	if _, ok := c.CategoryNumber("c5"); ok {
		t.Error("CategoryNumber found a category no item has")
	}
}

// TestDecodeCatalogLongLines: lines longer than the reader's buffer decode
// like the others.
func TestDecodeCatalogLongLines(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	data := `{"id":"a","available":true}` + "\n" + `{"id":"` + long + `","category":"` + long + `y","available":false}` + "\n" + `{"id":"b"}`
	rows, c, err := decodeCatalog(strings.NewReader(data), 3)
	if err != nil {
		t.Fatal(err)
	}
	items := itemList(rows, c)
	want := []Item{{ID: "a", Available: true}, {ID: long, Category: long + "y"}, {ID: "b", Available: true}}
	if !reflect.DeepEqual(items, want) {
		t.Errorf("decoded %d items, want %d: the long one %v", len(items), len(want), len(items) > 1 && reflect.DeepEqual(items[1], want[1]))
	}
}
