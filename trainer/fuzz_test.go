package trainer

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// The readers either accept input or reject it with ErrFormat; accepted
// input always leaves a consistent Dataset.
func FuzzReadLightGCN(f *testing.F) {
	seed, _ := os.ReadFile("testdata/lightgcn.txt")
	f.Add(seed)
	f.Add([]byte("0 1 1 1\n\n\n7"))
	f.Add([]byte("1 x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDataset()
		if err := ReadLightGCN(bytes.NewReader(data), d); err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		checkConsistent(t, d)
	})
}

func FuzzReadJSONL(f *testing.F) {
	seed, _ := os.ReadFile("testdata/events.jsonl")
	f.Add(seed)
	f.Add([]byte(`{"user_id":"u","item_id":"i","weight":1e39}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDataset()
		if err := ReadJSONL(bytes.NewReader(data), d); err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		checkConsistent(t, d)
	})
}

func checkConsistent(t *testing.T, d *Dataset) {
	t.Helper()
	n := 0
	for u := range d.NumUsers() {
		items, w := d.UserItems(u), d.UserWeights(u)
		if len(items) != len(w) {
			t.Fatalf("user %d: %d items, %d weights", u, len(items), len(w))
		}
		for j, i := range items {
			if int(i) >= d.NumItems() || (j > 0 && items[j-1] >= i) {
				t.Fatalf("user %d: items %v not sorted rows", u, items)
			}
			if !(w[j] >= 0) {
				t.Fatalf("user %d: weight %v", u, w[j])
			}
		}
		n += len(items)
	}
	if n != d.NumInteractions() {
		t.Fatalf("NumInteractions %d, counted %d", d.NumInteractions(), n)
	}
}
