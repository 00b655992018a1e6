package events

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of a RecordEvents batch.
const (
	// MaxBatch is the largest number of events in one batch.
	MaxBatch = 1000
	// MaxFuture is how far after the time of receipt an event's timestamp may be.
	MaxFuture = 5 * time.Minute
	// MaxIDLen is the longest id, in bytes.
	MaxIDLen = 256
)

// InvalidError names the first invalid event of a batch and what is wrong with it.
type InvalidError struct {
	// Index is the event's position in the batch, or -1 for a problem with the
	// batch as a whole.
	Index int
	// Field is the proto field name ("user_id"), "events" for a batch problem,
	// or empty when the event itself is missing.
	Field  string
	Reason string
}

// FieldPath names the offending field as a request path: "events[3].user_id",
// "events[3]" or "events".
func (e *InvalidError) FieldPath() string {
	if e.Index < 0 {
		return "events"
	}
	p := "events[" + strconv.Itoa(e.Index) + "]"
	if e.Field != "" {
		p += "." + e.Field
	}
	return p
}

func (e *InvalidError) Error() string { return e.FieldPath() + ": " + e.Reason }

// Validate checks a batch received at now and returns an *InvalidError for the
// first problem:
//   - 1 to MaxBatch events, none of them null;
//   - event_id, user_id and item_id: 1 to MaxIDLen bytes of UTF-8;
//   - type: a known value other than EVENT_TYPE_UNSPECIFIED;
//   - weight: finite, ≥ 0 and representable as float32 (the trainer's precision);
//     a rating needs a weight > 0, as it has no default;
//   - timestamp, when set: valid and at most MaxFuture after now;
//   - request_id, model_version and model, when set: at most MaxIDLen bytes of UTF-8.
//
// Every event that passes can be marshaled.
func Validate(evs []*recservev1.Event, now time.Time) error {
	if len(evs) == 0 || len(evs) > MaxBatch {
		return &InvalidError{Index: -1, Field: "events", Reason: fmt.Sprintf("must hold 1 to %d events, not %d", MaxBatch, len(evs))}
	}
	for i, e := range evs {
		if field, reason := check(e, now); reason != "" {
			return &InvalidError{Index: i, Field: field, Reason: reason}
		}
	}
	return nil
}

// check returns the first invalid field of e and why, or an empty reason.
func check(e *recservev1.Event, now time.Time) (field, reason string) {
	if e == nil {
		return "", "must not be null"
	}
	required := []struct{ name, v string }{
		{"event_id", e.GetEventId()}, {"user_id", e.GetUserId()}, {"item_id", e.GetItemId()},
	}
	for _, f := range required {
		if f.v == "" {
			return f.name, "must not be empty"
		}
		if r := checkString(f.v); r != "" {
			return f.name, r
		}
	}
	t := e.GetType()
	if _, known := recservev1.EventType_name[int32(t)]; !known || t == recservev1.EventType_EVENT_TYPE_UNSPECIFIED {
		return "type", fmt.Sprintf("must be a known event type other than EVENT_TYPE_UNSPECIFIED, not %d", int32(t))
	}
	w := e.GetWeight()
	switch {
	case math.IsNaN(w) || math.IsInf(w, 0) || w > math.MaxFloat32:
		return "weight", "must be a finite number"
	case w < 0:
		return "weight", "must not be negative"
	case w == 0 && t == recservev1.EventType_EVENT_TYPE_RATING:
		return "weight", "must be greater than 0 for a rating"
	}
	if ts := e.GetTimestamp(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return "timestamp", "must be a valid timestamp"
		}
		if ts.AsTime().After(now.Add(MaxFuture)) {
			return "timestamp", fmt.Sprintf("must be at most %v in the future", MaxFuture)
		}
	}
	optional := []struct{ name, v string }{
		{"request_id", e.GetRequestId()}, {"model_version", e.GetModelVersion()}, {"model", e.GetModel()},
	}
	for _, f := range optional {
		if r := checkString(f.v); r != "" {
			return f.name, r
		}
	}
	return "", ""
}

func checkString(s string) string {
	if len(s) > MaxIDLen {
		return fmt.Sprintf("must be at most %d bytes long", MaxIDLen)
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	return ""
}

// Normalize fills defaults in place for events received at now: a missing
// timestamp becomes now and a zero weight the type's default (see Weight).
// Null events are left alone.
func Normalize(evs []*recservev1.Event, now time.Time) {
	for _, e := range evs {
		if e == nil {
			continue
		}
		if e.Timestamp == nil {
			e.Timestamp = timestamppb.New(now)
		}
		if e.Weight == 0 {
			e.Weight = Weight(e.Type)
		}
	}
}

// Weight returns the default weight of an event type: view 1, click 2,
// add_to_cart 3, purchase 5. Impressions weigh 0: they are feedback on a
// recommendation, not interest in the item. Ratings have no default (their
// weight is the rating), nor have unknown types.
func Weight(t recservev1.EventType) float64 {
	switch t {
	case recservev1.EventType_EVENT_TYPE_VIEW:
		return 1
	case recservev1.EventType_EVENT_TYPE_CLICK:
		return 2
	case recservev1.EventType_EVENT_TYPE_ADD_TO_CART:
		return 3
	case recservev1.EventType_EVENT_TYPE_PURCHASE:
		return 5
	}
	return 0
}
