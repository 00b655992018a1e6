// Package catalog is the run-time item catalog: the changes made to items since
// a model version was trained (upserts, availability, deletions), kept as the
// latest state of every changed item. Changes travel as recservev1.CatalogRecord
// values; a State applies them in any order and any number of times with the
// same result, because every item keeps the times of its last changes, one for
// its content (upsert, deletion) and one for its availability (set by an
// availability change or an upsert), and an older change never overrides a
// newer one. The stores (File, Redis) persist the state so that a restart
// reads it back.
package catalog

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of a change batch and of an item.
const (
	MaxBatch         = 1000
	MaxIDLen         = 256
	MaxAttributes    = 64
	MaxAttrKeyLen    = 128
	MaxAttrValueLen  = 1024
	MaxCategoryLen   = 256
	DefaultTopicName = "catalog"
)

// Item is the latest known state of a changed item.
type Item struct {
	ID string
	// Upserted: Category and Attributes are the item's own, set by an upsert;
	// otherwise only its availability changed and a model version's catalog
	// has the rest.
	Upserted   bool
	Category   string
	Attributes map[string]string
	// Available is the last availability set; a deleted item is served as
	// unavailable whatever it says.
	Available bool
	Deleted   bool
	// Time of the last content change (upsert or deletion) applied, zero if
	// none, and AvailableTime of the last availability.
	Time, AvailableTime time.Time
}

// Served reports whether the item may be recommended.
func (it Item) Served() bool { return it.Available && !it.Deleted }

// Records returns the changes that recreate it, each stamped with its time:
// the content change (an upsert or a deletion) if any, then the availability
// unless the upsert set it.
func (it Item) Records() []*recservev1.CatalogRecord {
	var out []*recservev1.CatalogRecord
	avail := it.Available
	switch {
	case it.Deleted:
		out = append(out, &recservev1.CatalogRecord{Time: timestamppb.New(it.Time), Change: &recservev1.CatalogRecord_DeleteItemId{DeleteItemId: it.ID}})
	case it.Upserted:
		out = append(out, &recservev1.CatalogRecord{Time: timestamppb.New(it.Time), Change: &recservev1.CatalogRecord_Upsert{Upsert: &recservev1.CatalogItem{
			ItemId: it.ID, Category: it.Category, Available: &avail, Attributes: maps.Clone(it.Attributes)}}})
	}
	if !it.AvailableTime.IsZero() && !(it.Upserted && it.AvailableTime.Equal(it.Time)) {
		out = append(out, &recservev1.CatalogRecord{Time: timestamppb.New(it.AvailableTime),
			Change: &recservev1.CatalogRecord_Availability{Availability: &recservev1.ItemAvailability{ItemId: it.ID, Available: avail}}})
	}
	return out
}

// State is the latest state of every changed item. Safe for concurrent use.
type State struct {
	mu    sync.RWMutex
	items map[string]*Item
}

// NewState returns an empty state.
func NewState() *State { return &State{items: map[string]*Item{}} }

// Restore applies items' states (as a store's Load returns them).
func (s *State) Restore(items []Item) { s.Apply(Records(items)) }

// Records returns the changes that recreate items (Item.Records of each).
func Records(items []Item) []*recservev1.CatalogRecord {
	var recs []*recservev1.CatalogRecord
	for _, it := range items {
		recs = append(recs, it.Records()...)
	}
	return recs
}

// ItemID returns the id of the item a record changes, or "" for an erasure.
func ItemID(r *recservev1.CatalogRecord) string {
	switch c := r.GetChange().(type) {
	case *recservev1.CatalogRecord_Upsert:
		return c.Upsert.GetItemId()
	case *recservev1.CatalogRecord_Availability:
		return c.Availability.GetItemId()
	case *recservev1.CatalogRecord_DeleteItemId:
		return c.DeleteItemId
	}
	return ""
}

// Apply applies the item changes of recs (erasures are not item changes and are
// skipped) and returns the items whose state changed, in the order of their
// last change. An upsert or deletion older than the item's last one changes
// nothing of its content, an availability (also an upsert's) older than its
// last availability nothing of that; a deleted item comes back only through a
// newer upsert.
func (s *State) Apply(recs []*recservev1.CatalogRecord) []Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []string
	for _, r := range recs {
		id := ItemID(r)
		if id == "" {
			continue
		}
		t := r.GetTime().AsTime()
		cur := s.items[id]
		next := Item{ID: id, Available: true}
		if cur != nil {
			next = *cur
		}
		newContent := cur == nil || !t.Before(cur.Time)
		newAvail := cur == nil || !t.Before(cur.AvailableTime)
		switch c := r.GetChange().(type) {
		case *recservev1.CatalogRecord_Upsert:
			u := c.Upsert
			if newContent {
				next.Upserted, next.Deleted, next.Category, next.Attributes, next.Time = true, false, u.GetCategory(), maps.Clone(u.GetAttributes()), t
			}
			if newAvail {
				next.Available, next.AvailableTime = u.Available == nil || u.GetAvailable(), t
			}
		case *recservev1.CatalogRecord_Availability:
			if newAvail {
				next.Available, next.AvailableTime = c.Availability.GetAvailable(), t
			}
		case *recservev1.CatalogRecord_DeleteItemId:
			if newContent {
				next.Upserted, next.Deleted, next.Category, next.Attributes, next.Time = false, true, "", nil, t
			}
		}
		if cur != nil && equal(*cur, next) {
			continue
		}
		if cur != nil {
			*cur = next // in place: a change allocates no new item
		} else {
			s.items[id] = &next
		}
		changed = append(changed, id)
	}
	out := make([]Item, 0, len(changed))
	seen := make(map[string]bool, len(changed))
	for i := len(changed) - 1; i >= 0; i-- { // the last change of each, in order
		if id := changed[i]; !seen[id] {
			seen[id] = true
			out = append(out, *s.items[id])
		}
	}
	slices.Reverse(out)
	return out
}

func equal(a, b Item) bool {
	return a.ID == b.ID && a.Upserted == b.Upserted && a.Category == b.Category && a.Available == b.Available &&
		a.Deleted == b.Deleted && a.Time.Equal(b.Time) && a.AvailableTime.Equal(b.AvailableTime) && maps.Equal(a.Attributes, b.Attributes)
}

// Get returns the state of item id, if it changed.
func (s *State) Get(id string) (Item, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.items[id]
	if !ok {
		return Item{}, false
	}
	return *it, true
}

// Items returns every changed item, sorted by id.
func (s *State) Items() []Item {
	s.mu.RLock()
	out := make([]Item, 0, len(s.items))
	for _, it := range s.items {
		out = append(out, *it)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Item) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Len returns the number of changed items.
func (s *State) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// Erasures returns the user ids that recs erase.
func Erasures(recs []*recservev1.CatalogRecord) []string {
	var out []string
	for _, r := range recs {
		if u := r.GetEraseUserId(); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// InvalidError names the first invalid entry of a batch: Field is a request
// path such as "items[3].item_id" or "item_ids".
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidateBatch checks a batch's size; list names its field.
func ValidateBatch(list string, n int) error {
	if n < 1 || n > MaxBatch {
		return invalid(list, "must hold 1 to %d entries, not %d", MaxBatch, n)
	}
	return nil
}

// ValidateID checks an item or user id at field.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return invalid(field, "must not be empty")
	case len(id) > MaxIDLen:
		return invalid(field, "must be at most %d bytes long", MaxIDLen)
	case !utf8.ValidString(id):
		return invalid(field, "must be valid UTF-8")
	}
	return nil
}

// ValidateItem checks an upserted item; at is its field path ("items[3]").
func ValidateItem(at string, it *recservev1.CatalogItem) error {
	if it == nil {
		return invalid(at, "must not be null")
	}
	if err := ValidateID(at+".item_id", it.GetItemId()); err != nil {
		return err
	}
	if c := it.GetCategory(); len(c) > MaxCategoryLen || !utf8.ValidString(c) {
		return invalid(at+".category", "must be at most %d bytes of UTF-8", MaxCategoryLen)
	}
	attrs := it.GetAttributes()
	if len(attrs) > MaxAttributes {
		return invalid(at+".attributes", "must hold at most %d entries, not %d", MaxAttributes, len(attrs))
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[k]
		switch {
		case k == "" || len(k) > MaxAttrKeyLen || !utf8.ValidString(k):
			return invalid(at+".attributes", "key %s must be 1 to %d bytes of UTF-8", strconv.Quote(k), MaxAttrKeyLen)
		case len(v) > MaxAttrValueLen || !utf8.ValidString(v):
			return invalid(at+".attributes["+k+"]", "must be at most %d bytes of UTF-8", MaxAttrValueLen)
		}
	}
	return nil
}

// Validate checks one record as it arrives from the topic.
func Validate(r *recservev1.CatalogRecord) error {
	switch c := r.GetChange().(type) {
	case *recservev1.CatalogRecord_Upsert:
		return ValidateItem("upsert", c.Upsert)
	case *recservev1.CatalogRecord_Availability:
		return ValidateID("availability.item_id", c.Availability.GetItemId())
	case *recservev1.CatalogRecord_DeleteItemId:
		return ValidateID("delete_item_id", c.DeleteItemId)
	case *recservev1.CatalogRecord_EraseUserId:
		return ValidateID("erase_user_id", c.EraseUserId)
	}
	return invalid("change", "must be set")
}
