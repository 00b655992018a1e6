package events

import (
	"strings"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// TypeName is an event type's short lower-case name ("purchase", "add_to_cart"),
// as counters and metric labels use it.
func TypeName(t recservev1.EventType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "EVENT_TYPE_"))
}
