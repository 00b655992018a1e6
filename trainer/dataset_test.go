package trainer

import (
	"slices"
	"testing"
)

func TestDatasetAddAccumulates(t *testing.T) {
	d := NewDataset()
	d.Add("u", "c", 1)
	d.Add("u", "a", 2)
	d.Add("u", "b", 1)
	d.Add("u", "a", 0.5) // repeat: accumulates
	d.Add("v", "b", 3)
	if got, want := d.NumInteractions(), 4; got != want {
		t.Fatalf("NumInteractions = %d, want %d", got, want)
	}
	if !slices.Equal(d.UserIDs, []string{"u", "v"}) || !slices.Equal(d.ItemIDs, []string{"c", "a", "b"}) {
		t.Fatalf("ids = %v %v", d.UserIDs, d.ItemIDs)
	}
	// Rows: c=0, a=1, b=2, sorted by row.
	if got := d.UserItems(0); !slices.Equal(got, []int32{0, 1, 2}) {
		t.Fatalf("UserItems(0) = %v", got)
	}
	if got := d.UserWeights(0); !slices.Equal(got, []float32{1, 2.5, 1}) {
		t.Fatalf("UserWeights(0) = %v", got)
	}
	if got := d.UserItems(1); !slices.Equal(got, []int32{2}) {
		t.Fatalf("UserItems(1) = %v", got)
	}
	if d.UserItems(2) != nil || d.UserItems(-1) != nil {
		t.Fatal("out-of-range UserItems not nil")
	}
	if r, ok := d.ItemRow("b"); !ok || r != 2 {
		t.Fatalf("ItemRow(b) = %d, %v", r, ok)
	}
	if _, ok := d.UserRow("w"); ok {
		t.Fatal("unknown user found")
	}
}

func TestNewHeldOutSharesRows(t *testing.T) {
	train := NewDataset()
	train.Add("u1", "i1", 1)
	train.Add("u2", "i2", 1)
	test := NewHeldOut(train)
	test.Add("u2", "i1", 1)
	test.Add("u3", "i3", 1) // new user and item
	if test.NumUsers() != 3 || test.NumItems() != 3 {
		t.Fatalf("held-out has %d users, %d items", test.NumUsers(), test.NumItems())
	}
	if train.NumUsers() != 2 || train.NumItems() != 2 {
		t.Fatal("NewHeldOut modified the training set")
	}
	if got := test.UserItems(1); !slices.Equal(got, []int32{0}) {
		t.Fatalf("test.UserItems(u2) = %v, want item row of i1", got)
	}
	if got := test.UserItems(0); len(got) != 0 {
		t.Fatalf("test.UserItems(u1) = %v, want none", got)
	}
}

func TestSplit(t *testing.T) {
	d := NewDataset()
	for u := range 50 {
		for i := range u % 12 {
			d.Add(itoa(u), itoa(i*7%40), float32(i+1))
		}
	}
	train, test := d.Split(0.25, 7)
	if train.NumInteractions()+test.NumInteractions() != d.NumInteractions() {
		t.Fatalf("split lost pairs: %d + %d != %d", train.NumInteractions(), test.NumInteractions(), d.NumInteractions())
	}
	for u := range d.NumUsers() {
		all, tr, te := d.UserItems(u), train.UserItems(u), test.UserItems(u)
		if len(all) > 0 && len(tr) == 0 {
			t.Fatalf("user %d kept no training item", u)
		}
		if want := min(len(all)-1, int(0.25*float64(len(all))+0.5)); len(all) > 0 && len(te) != want {
			t.Fatalf("user %d: %d held out of %d, want %d", u, len(te), len(all), want)
		}
		merged := slices.Sorted(slices.Values(append(slices.Clone(tr), te...)))
		if !slices.Equal(merged, all) {
			t.Fatalf("user %d: train %v + test %v != %v", u, tr, te, all)
		}
	}
	train2, test2 := d.Split(0.25, 7)
	for u := range d.NumUsers() {
		if !slices.Equal(train.UserItems(u), train2.UserItems(u)) || !slices.Equal(test.UserItems(u), test2.UserItems(u)) {
			t.Fatal("split is not deterministic")
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
