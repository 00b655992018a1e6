// Package online keeps the real-time state the server reads on every request:
// per-user recent items, seen sets and event counts, item popularity, and the
// response cache. Redis holds it in production; Memory holds it in one process
// for the demo and tests. Both apply an event id at most once.
package online

import (
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Defaults of the stores.
const (
	// RecentMax is how many recent interactions are kept per user.
	RecentMax = 50
	// DefaultTTL is how long per-user state and event ids are kept after the last event.
	DefaultTTL = 30 * 24 * time.Hour
)

// Interaction is one recent interaction of a user.
type Interaction struct {
	Item   string
	Weight float32
}

// User is a user's real-time state.
type User struct {
	// Recent interactions, newest first, at most RecentMax.
	Recent []Interaction
	// Seen holds every item the user interacted with (impressions excluded).
	Seen map[string]struct{}
	// Gen changes with every applied event of the user; cache keys include it,
	// so an event invalidates the user's cached responses.
	Gen int64
}

// isInteraction reports whether an event type counts as an interaction with the
// item (impressions are feedback, not interest).
func isInteraction(t recservev1.EventType) bool {
	return t != recservev1.EventType_EVENT_TYPE_IMPRESSION && t != recservev1.EventType_EVENT_TYPE_UNSPECIFIED
}
