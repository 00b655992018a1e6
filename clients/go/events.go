package recserveclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// ErrEventType is returned for an event whose Type is not one of the EventType constants.
var ErrEventType = errors.New("recserveclient: unknown event type")

// EventType is what the user did.
type EventType string

// The event types.
const (
	EventView      EventType = "view"
	EventClick     EventType = "click"
	EventAddToCart EventType = "add_to_cart"
	EventPurchase  EventType = "purchase"
	EventRating    EventType = "rating" // Weight carries the rating
	// EventImpression: the item was shown to the user.
	EventImpression EventType = "impression"
)

// ParseEventType accepts the EventType names ("purchase") and the proto enum
// names ("EVENT_TYPE_PURCHASE"), in any case.
func ParseEventType(s string) (EventType, error) {
	t := EventType(strings.TrimPrefix(strings.ToLower(s), "event_type_"))
	if _, err := t.proto(); err != nil {
		return "", err
	}
	return t, nil
}

func (t EventType) proto() (recservev1.EventType, error) {
	v, ok := recservev1.EventType_value["EVENT_TYPE_"+strings.ToUpper(string(t))]
	if !ok || v == int32(recservev1.EventType_EVENT_TYPE_UNSPECIFIED) {
		return 0, fmt.Errorf("%w %q", ErrEventType, string(t))
	}
	return recservev1.EventType(v), nil
}

// Event is one interaction of a user with an item.
type Event struct {
	// ID identifies the event: one already seen is counted once downstream. Empty:
	// RecordEvents assigns a random one.
	ID     string
	UserID string
	ItemID string
	Type   EventType
	// Weight of the interaction; 0 uses the type's default.
	Weight float64
	// Time it happened; zero means when the server received it.
	Time time.Time
	// The recommendation that led to the event, if any (Recommendations.RequestID,
	// Model and ModelVersion).
	RequestID    string
	Model        string
	ModelVersion string
}

// RecordEvents sends 1 to 1000 events and returns how many the broker
// acknowledged. Events without an ID get one, written back into events before the
// first attempt: the client's retries, and a caller sending the same slice again
// after an error, carry the same ids, and the ids make the second delivery count once.
func (c *Client) RecordEvents(ctx context.Context, events []Event) (int, error) {
	req := &recservev1.RecordEventsRequest{Events: make([]*recservev1.Event, len(events))}
	for i := range events {
		e := &events[i]
		t, err := e.Type.proto()
		if err != nil {
			return 0, fmt.Errorf("event %d: %w", i, err)
		}
		if e.ID == "" {
			e.ID = newEventID()
		}
		pe := &recservev1.Event{
			EventId: e.ID, UserId: e.UserID, ItemId: e.ItemID, Type: t, Weight: e.Weight,
			RequestId: e.RequestID, Model: e.Model, ModelVersion: e.ModelVersion,
		}
		if !e.Time.IsZero() {
			pe.Timestamp = timestamppb.New(e.Time)
		}
		req.Events[i] = pe
	}
	resp, err := c.events.RecordEvents(ctx, req)
	if err != nil {
		return 0, err
	}
	return int(resp.GetAccepted()), nil
}

// newEventID returns 128 random bits in hex.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
