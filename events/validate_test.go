package events

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func validEvent() *recservev1.Event {
	return &recservev1.Event{
		EventId: "e1", UserId: "u1", ItemId: "i1",
		Type:      recservev1.EventType_EVENT_TYPE_CLICK,
		Timestamp: timestamppb.New(now.Add(-time.Hour)),
	}
}

func TestValidate(t *testing.T) {
	batch := func(n int) []*recservev1.Event {
		evs := make([]*recservev1.Event, n)
		for i := range evs {
			evs[i] = validEvent()
		}
		return evs
	}
	// third returns a batch of three valid events with the third one changed by f.
	third := func(f func(e *recservev1.Event)) []*recservev1.Event {
		evs := batch(3)
		f(evs[2])
		return evs
	}
	long := strings.Repeat("x", MaxIDLen+1)
	tests := []struct {
		name   string
		evs    []*recservev1.Event
		path   string // "" means valid
		reason string // substring of the reason
	}{
		{"one", batch(1), "", ""},
		{"max batch", batch(MaxBatch), "", ""},
		{"empty batch", nil, "events", "1 to 1000"},
		{"too many", batch(MaxBatch + 1), "events", "not 1001"},
		{"empty event", append(batch(2), &recservev1.Event{}), "events[2].event_id", "must not be empty"},
		{"missing event_id", third(func(e *recservev1.Event) { e.EventId = "" }), "events[2].event_id", "must not be empty"},
		{"missing user_id", third(func(e *recservev1.Event) { e.UserId = "" }), "events[2].user_id", "must not be empty"},
		{"missing item_id", third(func(e *recservev1.Event) { e.ItemId = "" }), "events[2].item_id", "must not be empty"},
		{"long event_id", third(func(e *recservev1.Event) { e.EventId = long }), "events[2].event_id", "at most 256 bytes"},
		{"max user_id", third(func(e *recservev1.Event) { e.UserId = long[:MaxIDLen] }), "", ""},
		{"long user_id", third(func(e *recservev1.Event) { e.UserId = long }), "events[2].user_id", "at most 256 bytes"},
		{"long item_id", third(func(e *recservev1.Event) { e.ItemId = long }), "events[2].item_id", "at most 256 bytes"},
		{"bad utf8 event_id", third(func(e *recservev1.Event) { e.EventId = "a\xff" }), "events[2].event_id", "UTF-8"},
		{"bad utf8 user_id", third(func(e *recservev1.Event) { e.UserId = "\xc3" }), "events[2].user_id", "UTF-8"},
		{"bad utf8 item_id", third(func(e *recservev1.Event) { e.ItemId = "\x80" }), "events[2].item_id", "UTF-8"},
		{"unspecified type", third(func(e *recservev1.Event) { e.Type = 0 }), "events[2].type", "UNSPECIFIED"},
		{"unknown type", third(func(e *recservev1.Event) { e.Type = 42 }), "events[2].type", "not 42"},
		{"every known type", third(func(e *recservev1.Event) { e.Type = recservev1.EventType_EVENT_TYPE_IMPRESSION }), "", ""},
		{"negative weight", third(func(e *recservev1.Event) { e.Weight = -1 }), "events[2].weight", "negative"},
		{"NaN weight", third(func(e *recservev1.Event) { e.Weight = math.NaN() }), "events[2].weight", "finite"},
		{"Inf weight", third(func(e *recservev1.Event) { e.Weight = math.Inf(1) }), "events[2].weight", "finite"},
		{"weight beyond float32", third(func(e *recservev1.Event) { e.Weight = 1e39 }), "events[2].weight", "finite"},
		{"rating without weight", third(func(e *recservev1.Event) { e.Type = recservev1.EventType_EVENT_TYPE_RATING }), "events[2].weight", "greater than 0"},
		{"rating with weight", third(func(e *recservev1.Event) { e.Type, e.Weight = recservev1.EventType_EVENT_TYPE_RATING, 4.5 }), "", ""},
		{"no timestamp", third(func(e *recservev1.Event) { e.Timestamp = nil }), "", ""},
		{"timestamp at limit", third(func(e *recservev1.Event) { e.Timestamp = timestamppb.New(now.Add(MaxFuture)) }), "", ""},
		{"timestamp too far ahead", third(func(e *recservev1.Event) { e.Timestamp = timestamppb.New(now.Add(MaxFuture + time.Second)) }), "events[2].timestamp", "at most 5m0s in the future"},
		{"invalid timestamp", third(func(e *recservev1.Event) { e.Timestamp = &timestamppb.Timestamp{Nanos: -1} }), "events[2].timestamp", "valid timestamp"},
		{"long request_id", third(func(e *recservev1.Event) { e.RequestId = long }), "events[2].request_id", "at most 256 bytes"},
		{"bad utf8 model_version", third(func(e *recservev1.Event) { e.ModelVersion = "\xff" }), "events[2].model_version", "UTF-8"},
		{"long model", third(func(e *recservev1.Event) { e.Model = long }), "events[2].model", "at most 256 bytes"},
		{"attribution", third(func(e *recservev1.Event) { e.RequestId, e.ModelVersion, e.Model = "r1", "3", "default" }), "", ""},
		{"first invalid wins", func() []*recservev1.Event {
			evs := batch(5)
			evs[1].ItemId = ""
			evs[3].UserId = ""
			return evs
		}(), "events[1].item_id", "must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.evs, now)
			if tt.path == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Validate = %v, want *InvalidError", err)
			}
			if inv.FieldPath() != tt.path || !strings.Contains(inv.Reason, tt.reason) {
				t.Fatalf("Validate = %q (path %q), want path %q and a reason with %q", err, inv.FieldPath(), tt.path, tt.reason)
			}
			if want := tt.path + ": " + inv.Reason; err.Error() != want {
				t.Fatalf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestValidateNilEvent(t *testing.T) {
	err := Validate([]*recservev1.Event{validEvent(), nil}, now)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Index != 1 || inv.Field != "" || err.Error() != "events[1]: must not be null" {
		t.Fatalf("Validate = %v, want events[1]: must not be null", err)
	}
}

func TestInvalidErrorFields(t *testing.T) {
	err := Validate([]*recservev1.Event{validEvent(), validEvent(), validEvent(), {EventId: "e", ItemId: "i", Type: 1}}, now)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Index != 3 || inv.Field != "user_id" || err.Error() != "events[3].user_id: must not be empty" {
		t.Fatalf("Validate = %#v", err)
	}
	err = Validate(nil, now)
	if !errors.As(err, &inv) || inv.Index != -1 || inv.Field != "events" {
		t.Fatalf("Validate(nil) = %#v", err)
	}
}

func TestNormalize(t *testing.T) {
	ts := timestamppb.New(now.Add(-time.Minute))
	evs := []*recservev1.Event{
		{EventId: "1", Type: recservev1.EventType_EVENT_TYPE_VIEW},
		{EventId: "2", Type: recservev1.EventType_EVENT_TYPE_CLICK, Timestamp: ts},
		{EventId: "3", Type: recservev1.EventType_EVENT_TYPE_ADD_TO_CART},
		{EventId: "4", Type: recservev1.EventType_EVENT_TYPE_PURCHASE},
		{EventId: "5", Type: recservev1.EventType_EVENT_TYPE_IMPRESSION},
		{EventId: "6", Type: recservev1.EventType_EVENT_TYPE_RATING, Weight: 4},
		{EventId: "7", Type: recservev1.EventType_EVENT_TYPE_PURCHASE, Weight: 0.5},
		nil,
	}
	Normalize(evs, now)
	want := []float64{1, 2, 3, 5, 0, 4, 0.5}
	for i, w := range want {
		if got := evs[i].GetWeight(); got != w {
			t.Errorf("event %s: weight %v, want %v", evs[i].EventId, got, w)
		}
	}
	for i, e := range evs[:len(want)] {
		wantTS := now
		if i == 1 {
			wantTS = ts.AsTime()
		}
		if !e.GetTimestamp().AsTime().Equal(wantTS) {
			t.Errorf("event %s: timestamp %v, want %v", e.EventId, e.GetTimestamp().AsTime(), wantTS)
		}
	}
	if evs[1].Timestamp != ts {
		t.Error("Normalize replaced a set timestamp")
	}
}

func TestWeight(t *testing.T) {
	for typ, want := range map[recservev1.EventType]float64{
		recservev1.EventType_EVENT_TYPE_UNSPECIFIED: 0,
		recservev1.EventType_EVENT_TYPE_VIEW:        1,
		recservev1.EventType_EVENT_TYPE_CLICK:       2,
		recservev1.EventType_EVENT_TYPE_ADD_TO_CART: 3,
		recservev1.EventType_EVENT_TYPE_PURCHASE:    5,
		recservev1.EventType_EVENT_TYPE_RATING:      0,
		recservev1.EventType_EVENT_TYPE_IMPRESSION:  0,
		99: 0,
	} {
		if got := Weight(typ); got != want {
			t.Errorf("Weight(%v) = %v, want %v", typ, got, want)
		}
	}
}

// FuzzValidate checks that Validate never panics, that an accepted batch stays
// valid after Normalize, and that it can be marshaled (so Produce cannot fail
// on encoding).
func FuzzValidate(f *testing.F) {
	seed, _ := proto.Marshal(validEvent())
	f.Add(seed, int64(0))
	f.Add([]byte{0x0a, 0x01, 0xff, 0x12, 0x01, 'u'}, int64(time.Hour))
	f.Fuzz(func(t *testing.T, b []byte, skew int64) {
		e := new(recservev1.Event)
		if proto.Unmarshal(b, e) != nil {
			// Invalid UTF-8 fails Unmarshal; build the event by hand instead.
			e = &recservev1.Event{EventId: string(b), UserId: "u", ItemId: string(b), Type: recservev1.EventType(len(b) % 8)}
		}
		at := now.Add(time.Duration(skew))
		evs := []*recservev1.Event{e}
		if Validate(evs, at) != nil {
			return
		}
		Normalize(evs, at)
		if err := Validate(evs, at); err != nil {
			t.Fatalf("valid event invalid after Normalize: %v", err)
		}
		if _, err := proto.Marshal(e); err != nil {
			t.Fatalf("valid event does not marshal: %v", err)
		}
	})
}
