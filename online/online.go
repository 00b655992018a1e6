// Package online keeps the real-time state the server reads on every request:
// per-user recent items, seen sets and event counts, per-item recent users,
// item popularity, and the response cache. Redis holds it in production; Memory
// holds it in one process for the demo and tests. Both apply an event id at
// most once, and both erase a user on request (EraseUser).
//
// # Erasure
//
// EraseUser removes what the store holds about a user: the recent list, seen
// set, event counts, gen counter, the user's entries in the per-item user
// lists of the items they touched (found in the seen set and recent list), and
// the user's cached responses. Two things stay, as they hold no user data:
// event-id dedupe markers (an id, applied or not; a redelivered pre-erasure
// event is still not applied again), and item popularity (an aggregate).
//
// Cached responses are found through the cache key, which the server builds as
// model/version/user/gen/hash (server.cacheKey). Model names and versions are
// registry names ([a-zA-Z0-9._-] and decimal numbers), gen is decimal and hash
// is hex, so none contains '/'; the user id may, and is everything between the
// second '/' and the second-to-last '/' (cacheUser). Each store indexes a
// user's cached entries by that user when it stores them, and EraseUser
// deletes them. Since gen restarts at 0 after an erasure, a response computed
// before the erasure but stored after it (a Recommend in flight) could later
// be served when the user's gen reaches the same value again; CacheSet
// therefore stores a user's entry only if its gen is the user's current gen
// (an entry for an older gen could never be hit anyway) and stores none for
// eraseGuard after the user's erasure. CacheGet is unchanged: one GET.
// Keys of another form are cached as before and not indexed.
package online

import (
	"strconv"
	"strings"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Defaults of the stores.
const (
	// RecentMax is how many recent interactions are kept per user.
	RecentMax = 50
	// DefaultTTL is how long per-user state and event ids are kept after the last event.
	DefaultTTL = 30 * 24 * time.Hour
	// eraseGuard is how long after EraseUser a user's responses are not cached,
	// so that a Recommend in flight during the erasure cannot store a response
	// computed from the erased state. It is far longer than a request lasts.
	eraseGuard = time.Minute
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
	// so an event invalidates the user's cached responses. It counts the
	// applied events, and restarts at 0 after EraseUser.
	Gen int64
}

// ItemUser is one recent user of an item, with the summed weight of the
// user's interactions with the item while the user has been on the item's
// list (a user pushed off the list by RecentMax newer users starts again from
// their next interaction).
type ItemUser struct {
	User   string
	Weight float32
}

// cacheUser returns the user and gen of a cache key the server built
// (model/version/user/gen/hash, where model, version, gen and hash contain no
// '/'); ok is false for a key of another form.
func cacheUser(key string) (user string, gen int64, ok bool) {
	i := strings.IndexByte(key, '/')
	if i < 0 {
		return "", 0, false
	}
	j := strings.IndexByte(key[i+1:], '/')
	if j < 0 {
		return "", 0, false
	}
	rest := key[i+1+j+1:] // user/gen/hash
	k := strings.LastIndexByte(rest, '/')
	if k < 0 {
		return "", 0, false
	}
	rest = rest[:k] // user/gen
	l := strings.LastIndexByte(rest, '/')
	if l < 0 {
		return "", 0, false
	}
	gen, err := strconv.ParseInt(rest[l+1:], 10, 64)
	if err != nil || gen < 0 {
		return "", 0, false
	}
	return rest[:l], gen, true
}

// isInteraction reports whether an event type counts as an interaction with the
// item (impressions are feedback, not interest).
func isInteraction(t recservev1.EventType) bool {
	return t != recservev1.EventType_EVENT_TYPE_IMPRESSION && t != recservev1.EventType_EVENT_TYPE_UNSPECIFIED
}
