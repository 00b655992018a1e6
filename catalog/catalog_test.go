package catalog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus s seconds.
func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func upsert(id, category string, available *bool, attrs map[string]string, s int) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Upsert{Upsert: &recservev1.CatalogItem{
		ItemId: id, Category: category, Available: available, Attributes: attrs}}, Time: timestamppb.New(at(s))}
}

func avail(id string, available bool, s int) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Availability{Availability: &recservev1.ItemAvailability{
		ItemId: id, Available: available}}, Time: timestamppb.New(at(s))}
}

func del(id string, s int) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_DeleteItemId{DeleteItemId: id}, Time: timestamppb.New(at(s))}
}

func erase(user string, s int) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_EraseUserId{EraseUserId: user}, Time: timestamppb.New(at(s))}
}

func ptr(b bool) *bool { return &b }

func get(t *testing.T, s *State, id string) Item {
	t.Helper()
	it, ok := s.Get(id)
	if !ok {
		t.Fatalf("item %s has no state", id)
	}
	return it
}

func ids(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// TestApplyOrder: an older change never overrides a newer one, whatever the
// order they are applied in.
func TestApplyOrder(t *testing.T) {
	s := NewState()
	s.Apply([]*recservev1.CatalogRecord{upsert("a", "books", nil, map[string]string{"p": "1"}, 10)})
	// Older changes: ignored, and not reported as changes.
	if ch := s.Apply([]*recservev1.CatalogRecord{avail("a", false, 5), del("a", 9), upsert("a", "toys", nil, nil, 1)}); len(ch) != 0 {
		t.Fatalf("older changes reported %v", ch)
	}
	it := get(t, s, "a")
	if !it.Upserted || it.Category != "books" || !it.Available || it.Deleted || !it.Time.Equal(at(10)) || it.Attributes["p"] != "1" {
		t.Fatalf("after older changes: %+v", it)
	}
	// A newer availability keeps the upserted category and attributes.
	s.Apply([]*recservev1.CatalogRecord{avail("a", false, 11)})
	if it := get(t, s, "a"); !it.Upserted || it.Category != "books" || it.Available || !it.Time.Equal(at(10)) || !it.AvailableTime.Equal(at(11)) {
		t.Fatalf("after a newer availability: %+v", it)
	}
	// A newer upsert replaces the item whole; absent availability is available.
	s.Apply([]*recservev1.CatalogRecord{upsert("a", "toys", nil, nil, 12)})
	if it := get(t, s, "a"); it.Category != "toys" || !it.Available || it.Attributes != nil {
		t.Fatalf("after a newer upsert: %+v", it)
	}
	// An availability change of an item no upsert named.
	s.Apply([]*recservev1.CatalogRecord{avail("b", false, 3)})
	if it := get(t, s, "b"); it.Upserted || it.Available || it.Deleted {
		t.Fatalf("availability-only item: %+v", it)
	}
}

// TestApplyDeleted: a newer availability of a deleted item is kept but the
// item stays deleted (not served); only a newer upsert brings it back.
func TestApplyDeleted(t *testing.T) {
	s := NewState()
	s.Apply([]*recservev1.CatalogRecord{upsert("a", "books", nil, nil, 1), del("a", 2)})
	s.Apply([]*recservev1.CatalogRecord{avail("a", true, 3)})
	if it := get(t, s, "a"); !it.Deleted || it.Upserted || it.Served() || !it.Time.Equal(at(2)) {
		t.Fatalf("deleted item after an availability change: %+v", it)
	}
	if ch := s.Apply([]*recservev1.CatalogRecord{upsert("a", "old", nil, nil, 1)}); len(ch) != 0 || !get(t, s, "a").Deleted {
		t.Fatalf("an upsert older than the deletion changed %v", ch)
	}
	// The availability did not advance the content's time: an upsert
	// between the deletion and it still applies.
	s.Apply([]*recservev1.CatalogRecord{upsert("a", "toys", ptr(false), nil, 3)})
	if it := get(t, s, "a"); it.Deleted || !it.Upserted || it.Category != "toys" || it.Available {
		t.Fatalf("upserted after deletion: %+v", it)
	}
	// Deleting an item no one upserted.
	s.Apply([]*recservev1.CatalogRecord{del("z", 1)})
	if it := get(t, s, "z"); !it.Deleted {
		t.Fatalf("deleted unknown item: %+v", it)
	}
}

// TestApplyIdempotent: replaying records changes nothing, and the changed
// items come back in the order of their last change.
func TestApplyIdempotent(t *testing.T) {
	recs := []*recservev1.CatalogRecord{
		upsert("a", "x", nil, nil, 1), avail("b", false, 2), upsert("c", "y", nil, nil, 3),
		avail("a", false, 4), erase("u1", 5), del("c", 6),
	}
	s := NewState()
	ch := s.Apply(recs)
	if got, want := ids(ch), []string{"b", "a", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("changed %v, want %v (in the order of their last change)", got, want)
	}
	before := s.Items()
	if ch := s.Apply(recs); len(ch) != 0 {
		t.Fatalf("replay reported changes %v", ch)
	}
	if !reflect.DeepEqual(s.Items(), before) {
		t.Fatalf("replay changed the state: %v, was %v", s.Items(), before)
	}
	if s.Len() != 3 {
		t.Fatalf("Len %d, want 3 (erasures are no items)", s.Len())
	}
	if got := Erasures(recs); !reflect.DeepEqual(got, []string{"u1"}) {
		t.Fatalf("Erasures %v", got)
	}
	if ItemID(erase("u1", 1)) != "" || ItemID(del("c", 1)) != "c" {
		t.Fatal("ItemID")
	}
}

// TestApplyAnyOrder applies shuffles of records with distinct times, upserts,
// deletions and availability changes of the same items mixed, and gets the
// same state each time; and a state rebuilt from its items' records is the
// same state.
func TestApplyAnyOrder(t *testing.T) {
	var recs []*recservev1.CatalogRecord
	rng := rand.New(rand.NewPCG(1, 2))
	for s := range 300 {
		switch rng.IntN(4) {
		case 0, 1:
			id := fmt.Sprint("i", rng.IntN(8))
			recs = append(recs, upsert(id, fmt.Sprint("c", rng.IntN(3)), ptr(rng.IntN(2) == 0), map[string]string{"k": fmt.Sprint(s)}, s))
		case 2:
			recs = append(recs, avail(fmt.Sprint("i", rng.IntN(8)), rng.IntN(2) == 0, s))
		default:
			recs = append(recs, del(fmt.Sprint("i", rng.IntN(8)), s))
		}
	}
	want := NewState()
	want.Apply(recs)
	for range 20 {
		shuffled := append([]*recservev1.CatalogRecord(nil), recs...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := NewState()
		for len(shuffled) > 0 { // in batches of varying size
			n := min(len(shuffled), 1+rng.IntN(10))
			got.Apply(shuffled[:n])
			shuffled = shuffled[n:]
		}
		if !reflect.DeepEqual(got.Items(), want.Items()) {
			t.Fatalf("shuffled: %v\nin order: %v", got.Items(), want.Items())
		}
	}
	rebuilt := NewState()
	for _, it := range want.Items() {
		rebuilt.Apply(it.Records())
	}
	if !reflect.DeepEqual(rebuilt.Items(), want.Items()) {
		t.Fatalf("rebuilt from records: %v\nwant %v", rebuilt.Items(), want.Items())
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	many := map[string]string{}
	for i := range MaxAttributes + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for _, tc := range []struct {
		rec   *recservev1.CatalogRecord
		field string // "" valid
	}{
		{upsert("a", "books", nil, map[string]string{"price": "9"}, 1), ""},
		{avail("a", false, 1), ""},
		{del("a", 1), ""},
		{erase("u", 1), ""},
		{&recservev1.CatalogRecord{}, "change"},
		{upsert("", "x", nil, nil, 1), "upsert.item_id"},
		{upsert(long, "x", nil, nil, 1), "upsert.item_id"},
		{upsert("\xff", "x", nil, nil, 1), "upsert.item_id"},
		{upsert("a", strings.Repeat("c", MaxCategoryLen+1), nil, nil, 1), "upsert.category"},
		{upsert("a", "x", nil, many, 1), "upsert.attributes"},
		{upsert("a", "x", nil, map[string]string{"": "v"}, 1), "upsert.attributes"},
		{upsert("a", "x", nil, map[string]string{"k": strings.Repeat("v", MaxAttrValueLen+1)}, 1), "upsert.attributes[k]"},
		{&recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Upsert{}}, "upsert"},
		{avail("", true, 1), "availability.item_id"},
		{del("", 1), "delete_item_id"},
		{erase("", 1), "erase_user_id"},
	} {
		err := Validate(tc.rec)
		var inv *InvalidError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("Validate(%v) = %v, want nil", tc.rec, err)
		case tc.field != "" && (!errors.As(err, &inv) || inv.Field != tc.field):
			t.Errorf("Validate(%v) = %v, want an error at %s", tc.rec, err, tc.field)
		}
	}
	if ValidateBatch("items", 0) == nil || ValidateBatch("items", MaxBatch+1) == nil || ValidateBatch("items", MaxBatch) != nil {
		t.Error("ValidateBatch limits")
	}
}
